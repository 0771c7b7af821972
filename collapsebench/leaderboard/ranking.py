"""Aggregating seeds and ranking strategies on accuracy and capacity retention together.

The rule is :data:`RANKING_RULE`; the board's pages print it, and :func:`rank_board` is its only
implementation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

RANKING_RULE = (
    "Within one track and one data fingerprint, each submission's score on a metric is its mean over "
    "seeds, shown with a 95% confidence interval (Student's t). Submissions are sorted into Pareto fronts "
    "on mean `average_accuracy` and mean `capacity_retention`, both higher-is-better: front 1 holds the "
    "submissions that no other beats on one of the two without losing on the other, front 2 is front 1 "
    "of the rest, and so on. Within a front, submissions are ordered by the mean of their two normalized "
    "ranks: on each of the two metrics, each of the n submissions that report both gets its rank among "
    "them (1 = best, ties share the mean of their ranks), mapped to [0, 1] by (rank - 1) / (n - 1); lower "
    "is better, and remaining "
    "ties go by name. A submission without `capacity_retention` (its track measured no activations) comes "
    "after all that have it, ordered by accuracy."
)

#: metric -> True when higher is better
METRICS = {
    "average_accuracy": True,
    "forgetting": False,
    "capacity_retention": True,
    "dead_units": False,
    "plasticity": True,
}
FRONT_METRICS = ("average_accuracy", "capacity_retention")
#: Where a metric's per-seed value is in a run's summary, when not under its own name.
SUMMARY_KEYS = {"plasticity": "plasticity_mean"}

# Two-sided 95% quantiles of Student's t, t_{0.975, df} for df = 1..30 (standard tables).
_T975 = (
    12.7062, 4.3027, 3.1824, 2.7764, 2.5706, 2.4469, 2.3646, 2.3060, 2.2622, 2.2281,
    2.2010, 2.1788, 2.1604, 2.1448, 2.1314, 2.1199, 2.1098, 2.1009, 2.0930, 2.0860,
    2.0796, 2.0739, 2.0687, 2.0639, 2.0595, 2.0555, 2.0518, 2.0484, 2.0452, 2.0423,
)
_Z975 = 1.959963984540054


def t_quantile_975(df: int) -> float:
    """t_{0.975, df}: the table up to 30 degrees of freedom, then the Cornish-Fisher expansion
    around the normal quantile (error below 1e-5 from df = 30 on)."""
    if df < 1:
        raise ValueError("a t quantile needs at least one degree of freedom")
    if df <= len(_T975):
        return _T975[df - 1]
    z = _Z975
    return (
        z
        + (z**3 + z) / (4 * df)
        + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)
        + (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * df**3)
    )


@dataclass(frozen=True)
class Estimate:
    """Mean over seeds and the half-width of its 95% confidence interval (None for one seed)."""

    mean: float
    ci95: float | None
    values: tuple[float, ...]

    @property
    def n(self) -> int:
        return len(self.values)


def estimate(values: Sequence[float]) -> Estimate:
    values = tuple(float(v) for v in values)
    if not values:
        raise ValueError("no values to estimate from")
    n = len(values)
    mean = sum(values) / n
    if n == 1:
        return Estimate(mean, None, values)
    variance = sum((v - mean) ** 2 for v in values) / (n - 1)
    return Estimate(mean, t_quantile_975(n - 1) * math.sqrt(variance / n), values)


@dataclass
class Entry:
    """One submission on the board."""

    name: str
    submission: dict[str, Any]
    estimates: dict[str, Estimate]
    front: int | None = None
    score: float | None = None  # mean normalized rank within the board; lower is better
    rank: int | None = None
    normalized_ranks: dict[str, float] = field(default_factory=dict)


def seed_values(submission: dict[str, Any], metric: str) -> list[float]:
    values = [run["summary"].get(SUMMARY_KEYS.get(metric, metric)) for run in submission["runs"]]
    numbers = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    return numbers if len(numbers) == len(values) else []  # a metric counts only if every seed has it


def entry_of(submission: dict[str, Any]) -> Entry:
    estimates = {m: estimate(v) for m in METRICS if (v := seed_values(submission, m))}
    return Entry(submission["name"], submission, estimates)


def dominates(a: Entry, b: Entry) -> bool:
    better_or_equal = all(a.estimates[m].mean >= b.estimates[m].mean for m in FRONT_METRICS)
    strictly = any(a.estimates[m].mean > b.estimates[m].mean for m in FRONT_METRICS)
    return better_or_equal and strictly


def pareto_fronts(entries: Sequence[Entry]) -> list[list[Entry]]:
    """Non-dominated sorting: the first list is the Pareto front, then the front of the rest, ..."""
    remaining = list(entries)
    fronts = []
    while remaining:
        front = [e for e in remaining if not any(dominates(o, e) for o in remaining if o is not e)]
        fronts.append(front)
        remaining = [e for e in remaining if all(e is not f for f in front)]
    return fronts


def normalized_ranks(entries: Sequence[Entry], metric: str) -> list[float]:
    """Each entry's rank on ``metric`` (1 best, ties averaged) mapped to [0, 1]; 0 for a lone entry."""
    higher_is_better = METRICS[metric]
    means = [e.estimates[metric].mean for e in entries]
    n = len(means)
    ranks = []
    for value in means:
        better = sum(1 for other in means if (other > value if higher_is_better else other < value))
        equal = sum(1 for other in means if other == value)
        ranks.append(better + (equal + 1) / 2)  # the mean of the ranks the tied entries occupy
    return [(r - 1) / (n - 1) if n > 1 else 0.0 for r in ranks]


def rank_board(submissions: Sequence[dict[str, Any]]) -> list[Entry]:
    """The entries of one board (one track, one data fingerprint), best first, ranks assigned."""
    entries = [entry_of(s) for s in submissions]
    measured = [e for e in entries if all(m in e.estimates for m in FRONT_METRICS)]
    unmeasured = [e for e in entries if all(e is not m for m in measured)]
    if measured:
        per_metric = {m: normalized_ranks(measured, m) for m in FRONT_METRICS}
        for index, entry in enumerate(measured):
            entry.normalized_ranks = {m: per_metric[m][index] for m in FRONT_METRICS}
            entry.score = sum(entry.normalized_ranks.values()) / len(FRONT_METRICS)
    ordered = []
    for number, front in enumerate(pareto_fronts(measured), start=1):
        for entry in front:
            entry.front = number
        ordered += sorted(front, key=lambda e: (e.score, e.name))
    ordered += sorted(unmeasured, key=lambda e: (-e.estimates["average_accuracy"].mean, e.name))
    for position, entry in enumerate(ordered, start=1):
        entry.rank = position
    return ordered


def sort_entries(entries: Sequence[Entry], metric: str) -> list[Entry]:
    """Entries by one metric's mean, best first (those without it last); ``rank`` keeps the ranking."""
    if metric == "rank":
        return sorted(entries, key=lambda e: e.rank)
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}")
    sign = -1 if METRICS[metric] else 1
    return sorted(entries, key=lambda e: (metric not in e.estimates,
                                          sign * e.estimates[metric].mean if metric in e.estimates else 0, e.rank))
