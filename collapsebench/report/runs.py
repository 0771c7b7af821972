"""Run directories as the report sees them: the parsed ``results.json`` and queries over its records.

A metric record is ``{name, kind, layer, experience, value, phase, iteration, data?}``
(:class:`collapsebench.evaluation.Recorder`). The report plots phase ``"end"`` records against
the experience just trained, and the Hessian's ``"start"`` records against the experience about
to be trained.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from collapsebench.errors import CollapsebenchError
from collapsebench.results import read_results


@dataclass
class Run:
    """One run directory's results, with the label it is plotted under."""

    path: Path
    result: dict[str, Any]
    label: str = ""
    records: list[dict[str, Any]] = field(init=False)

    def __post_init__(self):
        self.records = [r for r in self.result.get("metrics") or [] if isinstance(r, dict)]

    @property
    def config(self) -> dict[str, Any]:
        return self.result.get("config") or {}

    @property
    def strategy(self) -> str:
        return str(self.config.get("strategy", "?"))

    @property
    def seed(self) -> Any:
        return self.config.get("seed", "?")

    @property
    def status(self) -> str:
        return str(self.result.get("status", "?"))

    @property
    def matrix(self) -> list[list[float]]:
        """R[i][j] as floats, ``nan`` where the protocol did not measure the cell (null in the file)."""
        return [[math.nan if v is None else float(v) for v in row] for row in self.result.get("accuracy_matrix") or []]

    @property
    def n_experiences(self) -> int:
        stream = self.result.get("stream") or {}
        return int(stream.get("n_experiences") or len(self.matrix))

    @property
    def summary(self) -> dict[str, Any]:
        return self.result.get("summary") or {}

    @property
    def tap_widths(self) -> dict[str, int]:
        return {t["name"]: int(t.get("width") or 0) for t in self.result.get("taps") or []}

    def select(self, name: str, kind: str | None = None, phase: str | None = "end") -> list[dict[str, Any]]:
        return [
            r for r in self.records
            if r.get("name") == name and (kind is None or r.get("kind") == kind) and (phase is None or r.get("phase") == phase)
        ]

    def has(self, name: str, kind: str | None = None, phase: str | None = "end") -> bool:
        return bool(self.select(name, kind, phase))

    def layers(self, name: str, kind: str | None = None, phase: str | None = "end") -> list[str]:
        """Layers with records of this metric: tapped layers in depth order, then any others."""
        seen = list(dict.fromkeys(r["layer"] for r in self.select(name, kind, phase)))
        taps = [t for t in self.tap_widths if t in seen]
        return taps + [layer for layer in seen if layer not in taps]

    def by_experience(self, name: str, kind: str, layer: str, phase: str = "end") -> dict[int, float]:
        """experience -> value (the last such record of the experience; ``nan`` where the value is null)."""
        values: dict[int, float] = {}
        for r in self.select(name, kind, phase):
            if r.get("layer") == layer:
                value = r.get("value")
                values[int(r["experience"])] = math.nan if value is None else float(value)
        return values

    def data_by_experience(self, name: str, kind: str, layer: str, phase: str = "end") -> dict[int, Any]:
        return {int(r["experience"]): r["data"] for r in self.select(name, kind, phase)
                if r.get("layer") == layer and r.get("data") is not None}


def load_runs(paths: Iterable[str | Path]) -> list[Run]:
    """Read each run directory (or results.json path) and label the runs for plotting.

    Runs are labelled by strategy when they share stream and architecture; otherwise the label
    names all three, so that runs of different benchmarks are never pooled.
    """
    runs = [Run(Path(p), read_results(p)) for p in paths]
    if not runs:
        raise CollapsebenchError("No run directories given.")
    for run in runs:
        check_matrix(run)
    benchmarks = {(r.config.get("stream"), r.config.get("model")) for r in runs}
    for run in runs:
        if len(benchmarks) == 1:
            run.label = run.strategy
        else:
            run.label = f"{run.config.get('stream', '?')} · {run.config.get('model', '?')} · {run.strategy}"
    return runs


def group_runs(runs: Sequence[Run]) -> dict[str, list[Run]]:
    """label -> runs (seeds of one configuration), in order of first appearance."""
    groups: dict[str, list[Run]] = {}
    for run in runs:
        groups.setdefault(run.label, []).append(run)
    return groups


def complete_matrix(run: Run) -> list[list[float]] | None:
    """The accuracy matrix if every experience finished and every cell was measured, else ``None``
    (forgetting needs all rows, and is never computed from cells a protocol left out)."""
    matrix = run.matrix
    size = len(matrix)
    if size == 0 or size != run.n_experiences or any(len(row) != size for row in matrix):
        return None
    if any(not math.isfinite(v) for row in matrix for v in row):
        return None
    return matrix


def _series(value: Any) -> dict[int, float]:
    """A per-experience list (nulls for unmeasured) as experience -> value, finite values only."""
    if not isinstance(value, list):
        return {}
    return {j: float(v) for j, v in enumerate(value)
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}


def new_task_accuracy(run: Run) -> dict[int, float]:
    """experience i -> test accuracy on i right after training on it, R[i][i]: the diagonal of the
    matrix (every protocol measures it), else the summary's stored series."""
    diagonal = {i: row[i] for i, row in enumerate(run.matrix) if i < len(row) and math.isfinite(row[i])}
    return diagonal or _series(run.summary.get("new_task_accuracy"))


def online_accuracy(run: Run) -> dict[int, float]:
    """experience i -> fraction of its training samples classified correctly before the update
    that used them (Dohare's online accuracy); empty for runs that predate it."""
    return _series(run.result.get("online_accuracy")) or _series(run.summary.get("online_accuracy"))


def peak_normalized(run: Run, kind: str, layer: str) -> dict[int, float]:
    """experience -> erank over its running peak: the recorded ``erank_peak_normalized`` when there
    is one, else computed from the recorded erank after each experience."""
    recorded = run.by_experience("erank_peak_normalized", kind, layer)
    if recorded:
        return recorded
    from collapsebench.metrics.analysis import erank_peak_normalized

    raw = run.by_experience("erank", kind, layer)
    experiences = sorted(raw)
    return dict(zip(experiences, erank_peak_normalized([raw[e] for e in experiences])))


def forgetting_and_erank_drop(run: Run) -> tuple[list[int], list[float], list[float]]:
    """(experiences j, activation-erank drop_j, forgetting_j) for j < T−1 (Zhu & Jin's pairing).

    forgetting_j = max over i < T−1 of R[i][j] − R[T−1][j] (SPEC.md). drop_j is the mean over
    tapped layers of peak-normalized activation erank right after training on j minus the same
    after the last experience: how much representational capacity was lost while j was being
    forgotten. The same pairing as the summary's ``forgetting_erank_correlation``.
    """
    from collapsebench.metrics.accuracy import forgetting_per_experience

    matrix = complete_matrix(run)
    if matrix is None or len(matrix) < 2:
        return [], [], []
    last = len(matrix) - 1
    normalized = {layer: peak_normalized(run, "activation", layer) for layer in run.layers("erank", "activation")}
    final = {layer: values[last] for layer, values in normalized.items() if math.isfinite(values.get(last, math.nan))}
    forgetting = forgetting_per_experience(matrix)
    experiences, drops, forgotten = [], [], []
    for j in range(last):
        changes = [normalized[layer][j] - final[layer] for layer in final if math.isfinite(normalized[layer].get(j, math.nan))]
        if changes:
            experiences.append(j)
            drops.append(sum(changes) / len(changes))
            forgotten.append(forgetting[j])
    return experiences, drops, forgotten


def cka_records(run: Run) -> list[tuple[str, int, int, float]]:
    """(layer, probe experience j, later experience i, CKA) of every finite CKA record.

    The probe experience comes from the record's ``data["probe_experience"]``, or else from a
    kind of the form ``exp<j>``.
    """
    rows = []
    for r in run.select("cka", None, phase=None):
        data = r.get("data") if isinstance(r.get("data"), dict) else {}
        probe = data.get("probe_experience")
        if probe is None and str(r.get("kind", "")).startswith("exp") and str(r["kind"])[3:].isdigit():
            probe = int(str(r["kind"])[3:])
        value = r.get("value")
        if probe is not None and value is not None and math.isfinite(float(value)):
            rows.append((str(r["layer"]), int(probe), int(r["experience"]), float(value)))
    return rows


def check_matrix(run: Run) -> None:
    """The accuracy matrix must be a list of rows of numbers or nulls (null: a cell not measured).

    A string or a row that is not a list is a damaged or hand-edited file: say which cell, rather
    than fail while drawing.
    """
    matrix = run.result.get("accuracy_matrix")
    where = run.path / "results.json" if run.path.is_dir() else run.path
    if matrix is None:
        return
    if not isinstance(matrix, list):
        raise CollapsebenchError(f"{where}: accuracy_matrix must be a list of rows, got {type(matrix).__name__}.")
    for i, row in enumerate(matrix):
        if not isinstance(row, list):
            raise CollapsebenchError(f"{where}: row {i} of accuracy_matrix must be a list, got {row!r}.")
        for j, value in enumerate(row):
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
                raise CollapsebenchError(
                    f"{where}: accuracy_matrix[{i}][{j}] must be a number (or null where unmeasured), got {value!r}."
                )
