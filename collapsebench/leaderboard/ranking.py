"""Aggregating seeds and ranking strategies on the metrics their track declares.

A track file's ``rank`` names the summary metrics its board ranks on (plasticity tracks:
``plasticity_retention`` and ``capacity_retention``); without one, accuracy and capacity
retention. :func:`ranking_rule` says the rule in words for the board's pages, and
:func:`rank_board` is its only implementation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from collapsebench.stats import Interval, interval, metric_interval, t_quantile_975  # noqa: F401 (re-exported)

class _Declared(Mapping):
    """A live view of the declared summaries (collapsebench.declarations): the host's accuracy
    summaries and those of every loaded evaluator, so a third-party one ranks with no host change."""

    def __init__(self, view):
        self._view = view

    def _table(self) -> dict:
        from collapsebench.declarations import catalog

        return self._view(catalog())

    def __getitem__(self, key):
        return self._table()[key]

    def __iter__(self):
        return iter(self._table())

    def __len__(self):
        return len(self._table())


#: metric -> True when higher is better
METRICS: Mapping[str, bool] = _Declared(lambda c: {n: s.higher_is_better for n, s in c.ranked().items()})
#: What a board ranks on when its track declares nothing (``rank`` in the track file).
DEFAULT_RANK = ("average_accuracy", "capacity_retention")
FRONT_METRICS = DEFAULT_RANK  # the name older code imports
#: Where a metric's per-seed value is in a run's summary, when not under its own name.
SUMMARY_KEYS: Mapping[str, str] = _Declared(lambda c: {n: s.name for n, s in c.ranked().items() if n != s.name})


def ranking_rule(rank: Sequence[str] = DEFAULT_RANK) -> str:
    """The rule, in words, for a board that ranks on ``rank`` (its track's declaration)."""
    count = {1: "one", 2: "two", 3: "three", 4: "four"}.get(len(rank), str(len(rank)))
    names = " and ".join(f"mean `{m}`" for m in rank)
    directions = ", ".join(f"`{m}` {'higher' if METRICS[m] else 'lower'}-is-better" for m in rank)
    return (
        "Within one track and one data fingerprint, each submission's score on a metric is its mean over "
        "seeds, shown with a 95% confidence interval (Student's t). Submissions are sorted into Pareto fronts "
        f"on {names} (the metrics the track declares; {directions}): front 1 holds the "
        f"submissions that no other beats on one of the {count} without losing on another, front 2 is front 1 "
        f"of the rest, and so on. Within a front, submissions are ordered by the mean of their {count} "
        f"normalized ranks: on each of the {count} metrics, each of the n submissions that report all of them "
        "gets its rank among them (1 = best, ties share the mean of their ranks), mapped to [0, 1] by "
        "(rank - 1) / (n - 1); lower is better, and remaining ties go by name. A submission that lacks one "
        f"of them (say, its track measured no activations) comes after all that have them, ordered by `{rank[0]}`."
    )


def __getattr__(name: str):
    # The rule reads the declared directions, so it is worded when first used, not at import.
    if name == "RANKING_RULE":
        return ranking_rule()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


#: How the board shows entries the seeds cannot tell apart, for its pages.
TIE_RULE = (
    "Entries whose 95% t-intervals overlap, on every metric the board ranks on, those of the first entry "
    "of their group share that entry's rank, shown as `6=`: their seeds cannot tell them apart. "
    "The listed order within a group is the order above."
)


@dataclass(frozen=True)
class Estimate:
    """Mean over seeds and its 95% t-interval (:mod:`collapsebench.stats`); ``ci95`` is the
    half-width before truncation to a bounded metric's bounds, None for one seed."""

    mean: float
    ci95: float | None
    values: tuple[float, ...]
    low: float | None = None
    high: float | None = None

    def __post_init__(self):
        if self.ci95 is not None and self.low is None:  # built from a bare half-width: symmetric
            object.__setattr__(self, "low", self.mean - self.ci95)
            object.__setattr__(self, "high", self.mean + self.ci95)

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def interval(self) -> Interval:
        return Interval(self.mean, self.ci95, self.low, self.high, self.values)


def estimate(values: Sequence[float], metric: str | None = None) -> Estimate:
    value = metric_interval(metric, values) if metric else interval(values)
    return Estimate(value.mean, value.half_width, value.values, value.low, value.high)


@dataclass
class Entry:
    """One submission on the board."""

    name: str
    submission: dict[str, Any]
    estimates: dict[str, Estimate]
    front: int | None = None
    score: float | None = None  # mean normalized rank within the board; lower is better
    rank: int | None = None
    tied_with: int | None = None  # the rank shown: its group's first entry's, when tied (TIE_RULE)
    normalized_ranks: dict[str, float] = field(default_factory=dict)


def _per_seed(value: Any) -> Any:
    """A per-task series (``new_task_accuracy``) counts as its mean over tasks."""
    if isinstance(value, list) and value and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        return sum(value) / len(value)
    return value


def seed_values(submission: dict[str, Any], metric: str) -> list[float]:
    values = [_per_seed(run["summary"].get(SUMMARY_KEYS.get(metric, metric))) for run in submission["runs"]]
    numbers = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    return numbers if len(numbers) == len(values) else []  # a metric counts only if every seed has it


def entry_of(submission: dict[str, Any]) -> Entry:
    estimates = {m: estimate(v, m) for m in METRICS if (v := seed_values(submission, m))}
    return Entry(submission["name"], submission, estimates)


def dominates(a: Entry, b: Entry, rank: Sequence[str] = DEFAULT_RANK) -> bool:
    def at_least(m):
        x, y = a.estimates[m].mean, b.estimates[m].mean
        return x >= y if METRICS[m] else x <= y

    def beats(m):
        x, y = a.estimates[m].mean, b.estimates[m].mean
        return x > y if METRICS[m] else x < y

    return all(at_least(m) for m in rank) and any(beats(m) for m in rank)


def pareto_fronts(entries: Sequence[Entry], rank: Sequence[str] = DEFAULT_RANK) -> list[list[Entry]]:
    """Non-dominated sorting: the first list is the Pareto front, then the front of the rest, ..."""
    remaining = list(entries)
    fronts = []
    while remaining:
        front = [e for e in remaining if not any(dominates(o, e, rank) for o in remaining if o is not e)]
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


def check_rank(rank: Sequence[str]) -> list[str]:
    """Problems with a track's ``rank`` declaration (empty: usable)."""
    if not isinstance(rank, (list, tuple)) or not rank or not all(isinstance(m, str) for m in rank):
        return ["track.rank must be a non-empty list of metric names"]
    problems = [f"track.rank: {m!r} is not a ranked metric (known: {', '.join(METRICS)})" for m in rank if m not in METRICS]
    if len(set(rank)) != len(rank):
        problems.append(f"track.rank: {list(rank)} names a metric twice")
    return problems


def rank_board(submissions: Sequence[dict[str, Any]], rank: Sequence[str] | None = None) -> list[Entry]:
    """The entries of one board (one track, one data fingerprint), best first, ranks assigned.

    ``rank`` is what the track declares its board ranks on; without a declaration, the default pair.
    """
    rank = tuple(rank or DEFAULT_RANK)
    entries = [entry_of(s) for s in submissions]
    measured = [e for e in entries if all(m in e.estimates for m in rank)]
    unmeasured = [e for e in entries if all(e is not m for m in measured)]
    if measured:
        per_metric = {m: normalized_ranks(measured, m) for m in rank}
        for index, entry in enumerate(measured):
            entry.normalized_ranks = {m: per_metric[m][index] for m in rank}
            entry.score = sum(entry.normalized_ranks.values()) / len(rank)
    ordered = []
    for number, front in enumerate(pareto_fronts(measured, rank), start=1):
        for entry in front:
            entry.front = number
        ordered += sorted(front, key=lambda e: (e.score, e.name))
    first = rank[0]

    def by_first(e: Entry):
        if first not in e.estimates:
            return (1, 0.0, e.name)
        mean = e.estimates[first].mean
        return (0, -mean if METRICS[first] else mean, e.name)

    ordered += sorted(unmeasured, key=by_first)
    for position, entry in enumerate(ordered, start=1):
        entry.rank = position
    assign_tie_groups(ordered, rank)
    return ordered


def assign_tie_groups(ordered: Sequence[Entry], rank: Sequence[str]) -> None:
    """TIE_RULE over the ranked order: each entry joins the group of the entry before it when its
    intervals overlap that group's first entry's on every ranked metric."""
    leader = None
    for entry in ordered:
        measured = all(m in entry.estimates for m in rank)
        if leader is not None and measured and all(
                entry.estimates[m].interval.overlaps(leader.estimates[m].interval) for m in rank):
            entry.tied_with = leader.rank
            leader.tied_with = leader.rank
        else:
            leader = entry if measured else None
            entry.tied_with = None


def shown_rank(entry: Entry) -> str:
    """``6=`` for an entry in a tie group of first entry 6, else its position."""
    return f"{entry.tied_with}=" if entry.tied_with is not None else str(entry.rank)


def sort_entries(entries: Sequence[Entry], metric: str) -> list[Entry]:
    """Entries by one metric's mean, best first (those without it last); ``rank`` keeps the ranking."""
    if metric == "rank":
        return sorted(entries, key=lambda e: e.rank)
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}")
    sign = -1 if METRICS[metric] else 1
    return sorted(entries, key=lambda e: (metric not in e.estimates,
                                          sign * e.estimates[metric].mean if metric in e.estimates else 0, e.rank))
