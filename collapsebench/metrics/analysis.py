"""Run-level helpers over recorded metric values: peak normalization, capacity retention, correlations.

Plain Python on lists of numbers, so result files can be analysed without torch.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

__all__ = [
    "Correlation",
    "capacity_retention",
    "correlate",
    "erank_peak_normalized",
    "pearson",
    "spearman",
]


def erank_peak_normalized(series: Sequence[float]) -> list[float]:
    """erank(t) / max over u ≤ t of erank(u) for each t of a layer's erank series (Zhu & Jin).

    1 while the rank only grows, below 1 after collapse. While the running maximum is still 0
    (a layer that has been all zero since the start) the ratio is 0/0 and reported as ``nan``.
    """
    normalized = []
    peak = -math.inf
    for value in series:
        value = float(value)
        peak = max(peak, value)
        normalized.append(value / peak if peak > 0 else math.nan)
    return normalized


def capacity_retention(final_by_layer: Mapping[str, float], peak_by_layer: Mapping[str, float]) -> float:
    """Mean over tapped layers of activation erank after the last experience / that layer's peak during the run.

    1 means no collapse. The peak of a run includes its end, so each layer's peak is taken as
    ``max(peak, final)`` (ratios never exceed 1). Layers whose peak is 0 (never active) have no
    ratio and are left out of the mean; ``nan`` when no layer has one. Both mappings must name the
    same layers.
    """
    if set(final_by_layer) != set(peak_by_layer):
        raise ValueError(
            f"capacity_retention needs the same layers on both sides: {sorted(final_by_layer)} vs {sorted(peak_by_layer)}"
        )
    ratios = []
    for layer, final in final_by_layer.items():
        peak = max(float(peak_by_layer[layer]), float(final))
        if peak > 0:
            ratios.append(float(final) / peak)
    return sum(ratios) / len(ratios) if ratios else math.nan


@dataclass(frozen=True)
class Correlation:
    """Pearson and Spearman correlation of two paired series, over the n pairs where both are finite."""

    r_pearson: float
    r_spearman: float
    n: int


def _finite_pairs(x: Sequence[float], y: Sequence[float]) -> tuple[list[float], list[float]]:
    if len(x) != len(y):
        raise ValueError(f"correlation needs paired series: {len(x)} vs {len(y)} values")
    kept = [(float(a), float(b)) for a, b in zip(x, y) if math.isfinite(float(a)) and math.isfinite(float(b))]
    return [a for a, _ in kept], [b for _, b in kept]


def _pearson_of(x: list[float], y: list[float]) -> float:
    n = len(x)
    if n < 3:
        return math.nan
    mean_x, mean_y = sum(x) / n, sum(y) / n
    sxy = sum((a - mean_x) * (b - mean_y) for a, b in zip(x, y))
    sxx = sum((a - mean_x) ** 2 for a in x)
    syy = sum((b - mean_y) ** 2 for b in y)
    if sxx == 0 or syy == 0:
        return math.nan
    return max(-1.0, min(1.0, sxy / math.sqrt(sxx * syy)))


def _average_ranks(values: list[float]) -> list[float]:
    """1-based ranks, ties sharing the mean of the ranks they span."""
    order = sorted(range(len(values)), key=values.__getitem__)
    ranks = [0.0] * len(values)
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and values[order[end + 1]] == values[order[start]]:
            end += 1
        shared = (start + end) / 2 + 1
        for position in range(start, end + 1):
            ranks[order[position]] = shared
        start = end + 1
    return ranks


def pearson(x: Sequence[float], y: Sequence[float]) -> tuple[float, int]:
    """(r, n): Pearson's r over the n finite pairs; r is ``nan`` when n < 3 or either side is constant."""
    fx, fy = _finite_pairs(x, y)
    return _pearson_of(fx, fy), len(fx)


def spearman(x: Sequence[float], y: Sequence[float]) -> tuple[float, int]:
    """(ρ, n): Pearson's r of the average ranks over the n finite pairs; ``nan`` as for :func:`pearson`."""
    fx, fy = _finite_pairs(x, y)
    return _pearson_of(_average_ranks(fx), _average_ranks(fy)), len(fx)


def correlate(x: Sequence[float], y: Sequence[float]) -> Correlation:
    """Both correlations of two paired series (pairs with a non-finite value dropped)."""
    r_pearson, n = pearson(x, y)
    r_spearman, _ = spearman(x, y)
    return Correlation(r_pearson=r_pearson, r_spearman=r_spearman, n=n)
