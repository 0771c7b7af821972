"""Accuracy matrices of sparse protocols in submissions: only the measured values, row by row.

A run's results.json keeps the T x T matrix with null cells (docs/protocols.md). Under
``current`` on a 2,000-task stream that is four million nulls per seed, so a submission stores
``accuracy_rows`` instead: row i holds the values of the columns the protocol measures after
experience i, in that order. The protocol alone says where each value belongs, so no cell can
be added or left out without the lengths disagreeing.
"""

from __future__ import annotations

from typing import Any

from collapsebench.protocols import Protocol, parse


def measured_rows(matrix, protocol: Protocol) -> list[list[float]]:
    size = len(matrix)
    return [[matrix[i][j] for j in protocol.columns(i, size)] for i in range(size)]


def dense(rows, protocol: Protocol, size: int) -> list[list[float | None]]:
    """The T x T matrix, None where not measured; ValueError naming the first row that does not fit."""
    if len(rows) != size:
        raise ValueError(f"{len(rows)} rows for {size} experiences")
    matrix = []
    for i, row in enumerate(rows):
        columns = protocol.columns(i, size)
        if len(row) != len(columns):
            raise ValueError(f"row {i} holds {len(row)} values; protocol {protocol.name!r} measures "
                             f"{len(columns)} after experience {i}")
        full: list[float | None] = [None] * size
        for j, value in zip(columns, row):
            full[j] = value
        matrix.append(full)
    return matrix


def run_matrix(run: dict[str, Any]) -> list[list[float | None]]:
    """A submission run's accuracy matrix, whichever form it is stored in."""
    if "accuracy_matrix" in run:
        return run["accuracy_matrix"]
    protocol = parse(run["evaluation"]["protocol"])
    return dense(run["accuracy_rows"], protocol, run["stream"]["n_experiences"])
