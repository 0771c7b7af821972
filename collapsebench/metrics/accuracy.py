"""Summaries of the accuracy matrix R, where R[i][j] is the test accuracy on experience j after
training on experience i (SPEC.md, "Accuracy, forgetting, plasticity"). Plain Python, so the
leaderboard can recompute them without torch.

Under an evaluation protocol other than ``full`` some cells are not measured: they are None.
A summary is computed only from measured cells; :func:`accuracy_summaries` says, for each one it
cannot compute, which cells it lacks, and for each one it can, what it is computed from.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

Matrix = Sequence[Sequence[float | None]]

SOURCES = {
    "average_accuracy": "final row of accuracy_matrix: mean over j of R[T-1][j]",
    "forgetting": "accuracy_matrix rows 0..T-2 and the final row: mean over j < T-1 of "
                  "max over i < T-1 of R[i][j] - R[T-1][j]",
    "bwt": "diagonal and final row of accuracy_matrix: mean over j < T-1 of R[T-1][j] - R[j][j]",
    "new_task_accuracy": "diagonal of accuracy_matrix: R[i][i] for each task i",
    "plasticity_retention": "new_task_accuracy: mean over the last 10% of tasks / mean over the first 10% "
                            "(at least one task each)",
    "online_plasticity_retention": "online_accuracy: mean over the last 10% of tasks / mean over the first 10% "
                                   "(at least one task each)",
}


class MissingCells(ValueError):
    """A summary was asked of cells that the run's protocol did not measure."""

    def __init__(self, summary: str, first: list[tuple[int, int]], count: int, needs: str):
        self.summary, self.first, self.count, self.needs = summary, first, count, needs
        shown = ", ".join(f"R[{i}][{j}]" for i, j in first)
        more = f" and {count - len(first)} more" if count > len(first) else ""
        super().__init__(f"{summary} needs {needs}; not measured: {shown}{more}")


def _check_square(matrix: Matrix) -> int:
    size = len(matrix)
    if size == 0 or any(len(row) != size for row in matrix):
        raise ValueError(f"the accuracy matrix must be T x T with T >= 1, got {[len(r) for r in matrix]} rows")
    return size


def _require(matrix: Matrix, summary: str, needs: str, cells: Iterable[tuple[int, int]]) -> None:
    # Counted, not listed: a long stream under `current` lacks hundreds of thousands of cells.
    first, count = [], 0
    for i, j in cells:
        if matrix[i][j] is None:
            count += 1
            if len(first) < 3:
                first.append((i, j))
    if count:
        raise MissingCells(summary, first, count, needs)


def measured_cells(matrix: Matrix) -> int:
    return sum(v is not None for row in matrix for v in row)


def average_accuracy(matrix: Matrix) -> float:
    """mean over j of R[T-1][j]: accuracy on every experience after the last one."""
    size = _check_square(matrix)
    _require(matrix, "average_accuracy", "the final row", ((size - 1, j) for j in range(size)))
    return sum(matrix[-1]) / size


def forgetting_per_experience(matrix: Matrix) -> list[float]:
    """For each j < T-1: max over i < T-1 of R[i][j] - R[T-1][j].

    Rows before j (experience j not yet trained) take part in the maximum, as SPEC.md's
    definition says; with accuracies in [0, 1] they rarely exceed R[j][j]. So every cell of
    rows 0..T-2 in columns 0..T-2 is needed: only ``full`` (or ``every:1``) measures them.
    """
    size = _check_square(matrix)
    _require(matrix, "forgetting", "R[i][j] for every i, j < T-1 and the final row",
             ((i, j) for i in range(size) for j in range(size - 1)))
    return [max(matrix[i][j] for i in range(size - 1)) - matrix[-1][j] for j in range(size - 1)]


def forgetting(matrix: Matrix) -> float:
    """The run's forgetting: the mean of :func:`forgetting_per_experience` (0 for T = 1)."""
    values = forgetting_per_experience(matrix)
    return sum(values) / len(values) if values else 0.0


def bwt(matrix: Matrix) -> float:
    """Backward transfer: mean over j < T-1 of R[T-1][j] - R[j][j] (0 for T = 1)."""
    size = _check_square(matrix)
    _require(matrix, "bwt", "the diagonal and the final row",
             [(j, j) for j in range(size)] + [(size - 1, j) for j in range(size)])
    if size == 1:
        return 0.0
    return sum(matrix[-1][j] - matrix[j][j] for j in range(size - 1)) / (size - 1)


def new_task_accuracy(matrix: Matrix) -> list[float]:
    """R[i][i] for each i: accuracy on each task just after training on it (every protocol measures it)."""
    size = _check_square(matrix)
    _require(matrix, "new_task_accuracy", "the diagonal", ((i, i) for i in range(size)))
    return [matrix[i][i] for i in range(size)]


def retention(series: Sequence[float | None]) -> float | None:
    """Mean over the last 10% of the series (at least one value) over the mean over the first 10%.

    1 means the learner learns the late tasks as well as the early ones; below 1, it lost
    plasticity. None where the first tenth averages 0 or is not finite.
    """
    if not series:
        raise ValueError("retention of an empty series")
    if any(v is None or not math.isfinite(v) for v in series):
        raise ValueError("retention needs a finite value for every task")
    k = max(1, len(series) // 10)
    first, last = sum(series[:k]) / k, sum(series[-k:]) / k
    return last / first if first > 0 else None


def plasticity(matrix: Matrix, fresh_accuracy: Sequence[float]) -> list[float]:
    """Per experience j: R[j][j] over the accuracy a freshly initialized model reaches on j alone."""
    diagonal = new_task_accuracy(matrix)
    return [d / f if f > 0 else math.nan for d, f in zip(diagonal, fresh_accuracy)]


def summarize(matrix: Matrix) -> dict[str, float]:
    """The classic summaries (average accuracy, forgetting, BWT) that the matrix measured enough for."""
    found = {}
    for name, function in (("average_accuracy", average_accuracy), ("forgetting", forgetting), ("bwt", bwt)):
        try:
            found[name] = function(matrix)
        except MissingCells:
            pass
    return found


@dataclass
class Summaries:
    values: dict[str, object] = field(default_factory=dict)
    #: summary -> why it could not be computed
    unavailable: dict[str, str] = field(default_factory=dict)
    #: summary -> what it is computed from
    sources: dict[str, str] = field(default_factory=dict)

    def attempt(self, name: str, compute, source: str | None = None) -> None:
        try:
            self.values[name] = compute()
        except MissingCells as exc:
            self.unavailable[name] = str(exc)
            return
        self.sources[name] = source or SOURCES[name]

    def add(self, other: dict[str, object], sources: dict[str, str] | None = None,
            unavailable: dict[str, str] | None = None) -> None:
        self.values.update(other)
        self.sources.update(sources or {})
        self.unavailable.update(unavailable or {})


def accuracy_summaries(matrix: Matrix, online_accuracy: Sequence[float] | None = None,
                       protocol: str = "full") -> Summaries:
    """Every accuracy summary the matrix (and the online accuracies, if any) allow."""
    found = Summaries()
    for name, function in (("average_accuracy", average_accuracy), ("forgetting", forgetting), ("bwt", bwt)):
        found.attempt(name, lambda f=function: f(matrix))
    for name in list(found.unavailable):
        found.unavailable[name] = f"not measured under evaluation protocol {protocol!r}: {found.unavailable[name]}"
    found.attempt("new_task_accuracy", lambda: new_task_accuracy(matrix))
    if "new_task_accuracy" in found.values:
        found.values["plasticity_retention"] = retention(found.values["new_task_accuracy"])
        found.sources["plasticity_retention"] = SOURCES["plasticity_retention"]
    if online_accuracy is not None and len(online_accuracy) == len(matrix):
        found.values["online_plasticity_retention"] = retention(online_accuracy)
        found.sources["online_plasticity_retention"] = SOURCES["online_plasticity_retention"]
    return found
