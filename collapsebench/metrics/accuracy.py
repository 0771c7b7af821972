"""Summaries of the accuracy matrix R, where R[i][j] is the test accuracy on experience j after
training on experience i (SPEC.md, "Accuracy, forgetting, plasticity"). Plain Python, so the
leaderboard can recompute them without torch."""

from __future__ import annotations

import math
from collections.abc import Sequence

Matrix = Sequence[Sequence[float]]


def _check_square(matrix: Matrix) -> int:
    size = len(matrix)
    if size == 0 or any(len(row) != size for row in matrix):
        raise ValueError(f"the accuracy matrix must be T x T with T >= 1, got {[len(r) for r in matrix]} rows")
    return size


def average_accuracy(matrix: Matrix) -> float:
    """mean over j of R[T-1][j]: accuracy on every experience after the last one."""
    size = _check_square(matrix)
    return sum(matrix[-1]) / size


def forgetting_per_experience(matrix: Matrix) -> list[float]:
    """For each j < T-1: max over i < T-1 of R[i][j] - R[T-1][j].

    Rows before j (experience j not yet trained) take part in the maximum, as SPEC.md's
    definition says; with accuracies in [0, 1] they rarely exceed R[j][j].
    """
    size = _check_square(matrix)
    return [max(matrix[i][j] for i in range(size - 1)) - matrix[-1][j] for j in range(size - 1)]


def forgetting(matrix: Matrix) -> float:
    """The run's forgetting: the mean of :func:`forgetting_per_experience` (0 for T = 1)."""
    values = forgetting_per_experience(matrix)
    return sum(values) / len(values) if values else 0.0


def bwt(matrix: Matrix) -> float:
    """Backward transfer: mean over j < T-1 of R[T-1][j] - R[j][j] (0 for T = 1)."""
    size = _check_square(matrix)
    if size == 1:
        return 0.0
    return sum(matrix[-1][j] - matrix[j][j] for j in range(size - 1)) / (size - 1)


def plasticity(matrix: Matrix, fresh_accuracy: Sequence[float]) -> list[float]:
    """Per experience j: R[j][j] over the accuracy a freshly initialized model reaches on j alone."""
    size = _check_square(matrix)
    return [matrix[j][j] / fresh_accuracy[j] if fresh_accuracy[j] > 0 else math.nan for j in range(size)]


def summarize(matrix: Matrix) -> dict[str, float]:
    """The summary every run reports."""
    return {
        "average_accuracy": average_accuracy(matrix),
        "forgetting": forgetting(matrix),
        "bwt": bwt(matrix),
    }
