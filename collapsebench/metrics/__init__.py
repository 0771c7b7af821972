"""Collapse metrics: plain functions of tensors, with no Avalanche inside.

Ranks and capacity (:mod:`.ranks`), representation similarity (:mod:`.similarity`), the Hessian
spectrum (:mod:`.hessian`) and run-level helpers (:mod:`.analysis`). Importing this package
imports torch: the CLI's fast paths must not import it.
"""

from collapsebench.metrics.ranks import (
    approx_rank,
    dead_units,
    dormant_units,
    erank,
    feature_norm,
    feature_rank,
    singular_values,
    srank,
    stable_rank,
    weight_magnitude,
)

__all__ = [
    "approx_rank",
    "dead_units",
    "dormant_units",
    "erank",
    "feature_norm",
    "feature_rank",
    "singular_values",
    "srank",
    "stable_rank",
    "weight_magnitude",
]
