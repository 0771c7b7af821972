"""The one statistic collapsebench reports over seeds: the mean and its 95% t-interval.

Every place that summarises seeds (``run --track``, the sweep's table, the leaderboard, the
report's bands) calls :func:`interval` and labels it with :func:`label`, so a number means the
same thing wherever it is printed. Pure Python on purpose: the leaderboard must stay torch- and
numpy-free.

Bounded metrics (accuracies, capacity retention, dead units: all in [0, 1]) get the same
t-interval truncated to their bounds. Truncation leaves the coverage of the true mean exactly
as it was, because the true mean lies inside the bounds: whenever the untruncated interval holds
it, the truncated one does too. The alternatives were worse for what the board has, three to
five seeds: a logit-transformed interval is undefined at exactly 0 or 1, values that dead units
(0.0) and easy tasks (1.0) reach, and a percentile bootstrap covers far less than 95% at n = 3
(it has ten distinct resamples). A truncated interval is printed as ``mean [low, high]``,
an untruncated one as ``mean ± half-width``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

# Two-sided 95% quantiles of Student's t, t_{0.975, df} for df = 1..30 (standard tables).
_T975 = (
    12.7062, 4.3027, 3.1824, 2.7764, 2.5706, 2.4469, 2.3646, 2.3060, 2.2622, 2.2281,
    2.2010, 2.1788, 2.1604, 2.1448, 2.1314, 2.1199, 2.1098, 2.1009, 2.0930, 2.0860,
    2.0796, 2.0739, 2.0687, 2.0639, 2.0595, 2.0555, 2.0518, 2.0484, 2.0452, 2.0423,
)
_Z975 = 1.959963984540054

#: The interval of every table and figure, in the words their headers and captions use.
METHOD = "95% t-interval"
class _DeclaredBounds(Mapping):
    """Summary metrics whose values cannot leave these bounds; their intervals are truncated to them.

    Read from the declarations (collapsebench.declarations): the host's accuracy summaries and
    every loaded evaluator's, so a third-party summary is bounded without a change here.
    """

    def _table(self) -> dict[str, tuple[float, float]]:
        from collapsebench.declarations import catalog

        found = catalog()
        bounded = {**found.summaries, **found.ranked()}
        return {name: s.bounds for name, s in bounded.items() if s.bounds is not None}

    def __getitem__(self, key):
        return self._table()[key]

    def __iter__(self):
        return iter(self._table())

    def __len__(self):
        return len(self._table())


BOUNDS: Mapping[str, tuple[float, float]] = _DeclaredBounds()


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
class Interval:
    """The mean over seeds and its 95% t-interval; ``low``/``high`` are None for a single seed."""

    mean: float
    half_width: float | None
    low: float | None
    high: float | None
    values: tuple[float, ...]

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def truncated(self) -> bool:
        """Whether a bound cut the interval (then it is no longer symmetric around the mean)."""
        if self.half_width is None:
            return False
        return not (math.isclose(self.low, self.mean - self.half_width)
                    and math.isclose(self.high, self.mean + self.half_width))

    def overlaps(self, other: Interval) -> bool:
        """Whether the two intervals share a point (a single seed counts as its value)."""
        low, high = (self.mean, self.mean) if self.low is None else (self.low, self.high)
        other_low, other_high = (other.mean, other.mean) if other.low is None else (other.low, other.high)
        return low <= other_high and other_low <= high


def interval(values: Sequence[float], bounds: tuple[float, float] | None = None) -> Interval:
    """Mean and 95% t-interval of ``values`` (one per seed), truncated to ``bounds`` if given."""
    values = tuple(float(v) for v in values)
    if not values:
        raise ValueError("no values to summarise")
    n = len(values)
    mean = sum(values) / n
    if n == 1 or not all(math.isfinite(v) for v in values):
        return Interval(mean, None, None, None, values)
    variance = sum((v - mean) ** 2 for v in values) / (n - 1)
    half = t_quantile_975(n - 1) * math.sqrt(variance / n)
    low, high = mean - half, mean + half
    if bounds is not None:
        low, high = max(low, bounds[0]), min(high, bounds[1])
    return Interval(mean, half, low, high, values)


def metric_interval(metric: str, values: Sequence[float]) -> Interval:
    """:func:`interval` with the bounds the metric is known to have (none for unknown metrics)."""
    return interval(values, BOUNDS.get(metric))


def format_interval(value: Interval, digits: int = 3) -> str:
    """``0.955 ± 0.045``; ``0.955 [0.844, 1.000]`` when truncated; the bare mean for one seed."""
    if value.half_width is None:
        return f"{value.mean:.{digits}f}"
    if value.truncated:
        return f"{value.mean:.{digits}f} [{value.low:.{digits}f}, {value.high:.{digits}f}]"
    return f"{value.mean:.{digits}f} ± {value.half_width:.{digits}f}"


def label(n: int | Sequence[int] | None = None) -> str:
    """The caption every table and figure carries: "mean ± 95% t-interval over 3 seeds".

    ``n`` may be several seed counts (a board's entries differ): the range is stated.
    """
    if n is None:
        over = "over seeds"
    else:
        counts = sorted({n} if isinstance(n, int) else set(n))
        if not counts:
            over = "over seeds"
        elif len(counts) == 1:
            over = f"over {counts[0]} seed{'s' if counts[0] != 1 else ''}"
        else:
            over = f"over {counts[0]}-{counts[-1]} seeds"
    return f"mean ± {METHOD} {over} (bounded metrics: truncated to their bounds)"
