"""Collapse metrics: plain functions of tensors, with no Avalanche inside.

Ranks and capacity (:mod:`.ranks`), representation similarity (:mod:`.similarity`), the Hessian
spectrum (:mod:`.hessian`) and run-level helpers (:mod:`.analysis`); definitions in
docs/metrics.md. Importing this package imports torch: the CLI's fast paths must not import it.
"""

from collapsebench.metrics.analysis import (
    Correlation,
    capacity_retention,
    correlate,
    erank_peak_normalized,
    pearson,
    spearman,
)
from collapsebench.metrics.hessian import (
    HessianDensity,
    HessianEigenvalues,
    HessianOperator,
    HessianTrace,
    hessian_density,
    hessian_erank,
    hessian_near_zero_mass,
    hessian_operator,
    hessian_top_eigenvalues,
    hessian_trace,
    smooth_density,
)
from collapsebench.metrics.ranks import (
    approx_rank,
    dead_units,
    dormant_units,
    erank,
    feature_norm,
    feature_rank,
    singular_values,
    spectrum_erank,
    srank,
    stable_rank,
    weight_magnitude,
)
from collapsebench.metrics.similarity import linear_cka

__all__ = [
    "Correlation",
    "HessianDensity",
    "HessianEigenvalues",
    "HessianOperator",
    "HessianTrace",
    "approx_rank",
    "capacity_retention",
    "correlate",
    "dead_units",
    "dormant_units",
    "erank",
    "erank_peak_normalized",
    "feature_norm",
    "feature_rank",
    "hessian_density",
    "hessian_erank",
    "hessian_near_zero_mass",
    "hessian_operator",
    "hessian_top_eigenvalues",
    "hessian_trace",
    "linear_cka",
    "pearson",
    "singular_values",
    "smooth_density",
    "spearman",
    "spectrum_erank",
    "srank",
    "stable_rank",
    "weight_magnitude",
]
