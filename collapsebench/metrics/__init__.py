"""Collapse metrics: plain functions of tensors, with no Avalanche inside.

Ranks and capacity (:mod:`.ranks`), representation similarity (:mod:`.similarity`), the Hessian
spectrum (:mod:`.hessian`), run-level helpers (:mod:`.analysis`) and accuracy-matrix summaries
(:mod:`.accuracy`); definitions in docs/metrics.md. Names are imported on first use, so that
the plain-Python modules (``accuracy``, ``analysis``) load without torch, which the
leaderboard and the CLI's fast paths must not import.
"""

from __future__ import annotations

import importlib

#: public name -> the submodule defining it
_WHERE = {
    "Correlation": "analysis",
    "HessianDensity": "hessian",
    "HessianEigenvalues": "hessian",
    "HessianOperator": "hessian",
    "HessianTrace": "hessian",
    "approx_rank": "ranks",
    "capacity_retention": "analysis",
    "correlate": "analysis",
    "dead_units": "ranks",
    "dormant_units": "ranks",
    "erank": "ranks",
    "erank_peak_normalized": "analysis",
    "feature_norm": "ranks",
    "feature_rank": "ranks",
    "hessian_density": "hessian",
    "hessian_erank": "hessian",
    "hessian_near_zero_mass": "hessian",
    "hessian_operator": "hessian",
    "hessian_top_eigenvalues": "hessian",
    "hessian_trace": "hessian",
    "linear_cka": "similarity",
    "pearson": "analysis",
    "singular_values": "ranks",
    "smooth_density": "hessian",
    "spearman": "analysis",
    "spectrum_erank": "ranks",
    "srank": "ranks",
    "stable_rank": "ranks",
    "weight_magnitude": "ranks",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name in _WHERE:
        value = getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
