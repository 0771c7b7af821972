"""Synthetic run directories for the report tests: every record kind the evaluators write, with
values chosen so that the figures' contents have closed forms.

Records follow the built-in evaluators: CKA has kind ``exp<j>`` with ``data["probe_experience"]``;
the whole-model Hessian has kind ``model`` and layer ``all``, per-layer blocks kind ``layer``."""

from __future__ import annotations

import json
from pathlib import Path

TAPS = (("fc1", 64), ("fc2", 32))
#: per strategy: (how much of an old experience survives each later one, erank lost per experience)
BEHAVIOUR = {"naive": (0.3, 0.12), "replay": (0.8, 0.04)}
ERANK_BASE = {"fc1": 40.0, "fc2": 20.0}


def accuracy(strategy: str, i: int, j: int, seed: int = 0) -> float:
    keep, _ = BEHAVIOUR[strategy]
    if j > i:
        return 0.0
    return (0.9 + 0.02 * j - 0.01 * seed) * keep ** (i - j)


def activation_erank(strategy: str, layer: str, experience: int, seed: int = 0) -> float:
    _, loss = BEHAVIOUR[strategy]
    # a small rise before the fall, so peak normalization has a peak to divide by
    rise = 1.05 if experience == 1 else 1.0
    return ERANK_BASE[layer] * rise * (1 - loss * experience) + seed


def weight_erank(strategy: str, layer: str, experience: int) -> float:
    return 2 * activation_erank(strategy, layer, experience)


def dead(layer: str, experience: int) -> float:
    return 0.05 * experience if layer == "fc1" else 0.1 * experience


def dormant(layer: str, experience: int) -> float:
    return 0.02 + 0.1 * experience * (1 if layer == "fc1" else 2)


def cka(layer_index: int, probe: int, later: int) -> float:
    return 1.0 - 0.1 * (later - probe) * (layer_index + 1)


def density(experience: int, phase: str) -> dict:
    centre = 0.5 * experience + (0.2 if phase == "start" else 0.0)
    nodes = [centre - 1.0, centre, centre + 0.5, 4.0 + experience]
    weights = [0.2, 0.5, 0.25, 0.05]
    return {"nodes": nodes, "weights": weights}


def _record(name, kind, layer, experience, value, phase="end", data=None):
    record = {"name": name, "kind": kind, "layer": layer, "experience": experience, "value": value,
              "phase": phase, "iteration": 10 * (experience + 1)}
    if data is not None:
        record["data"] = data
    return record


def synthetic_result(strategy="naive", seed=0, n_experiences=4, finished=None, include=("erank", "units", "hessian", "cka")):
    """A results.json dict; ``finished`` < n_experiences makes a partial run."""
    finished = n_experiences if finished is None else finished
    records = []
    for e in range(finished):
        if "hessian" in include and e > 0:
            records.append(_record("hessian_density", "model", "all", e, None, "start", density(e, "start")))
            records.append(_record("hessian_trace", "model", "all", e, 3.0 + e, "start"))
        for index, (layer, _) in enumerate(TAPS):
            if "erank" in include:
                records.append(_record("erank", "weight", layer, e, weight_erank(strategy, layer, e)))
                records.append(_record("erank", "activation", layer, e, activation_erank(strategy, layer, e, seed)))
            if "units" in include:
                records.append(_record("dead_units", "activation", layer, e, dead(layer, e)))
                records.append(_record("dormant_units", "activation", layer, e, dormant(layer, e)))
            if "cka" in include:
                for probe in range(e):
                    records.append(_record("cka", f"exp{probe}", layer, e, cka(index, probe, e),
                                           data={"probe_experience": probe}))
        if "hessian" in include:
            records.append(_record("hessian_density", "model", "all", e, None, "end", density(e, "end")))
            records.append(_record("hessian_trace", "model", "all", e, 2.0 + e, "end"))
    matrix = [[accuracy(strategy, i, j, seed) for j in range(n_experiences)] for i in range(finished)]
    summary = {}
    if finished == n_experiences:
        summary = {"average_accuracy": sum(matrix[-1]) / n_experiences, "forgetting": 0.5, "bwt": -0.5,
                   "forgetting_erank_correlation": {"pearson": 0.9, "spearman": 1.0, "n": n_experiences - 1}}
    return {
        "schema_version": 1,
        "status": "complete" if finished == n_experiences else "partial",
        "config": {"stream": "split-digits", "model": "mlp", "strategy": strategy, "seed": seed},
        "stream": {"n_experiences": n_experiences},
        "taps": [{"name": name, "width": width} for name, width in TAPS],
        "accuracy_matrix": matrix,
        "summary": summary,
        "metrics": records,
    }


def write_run(directory: Path, **kwargs) -> Path:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "results.json").write_text(json.dumps(synthetic_result(**kwargs)))
    return directory


def weighted(values_by_layer: dict[str, float]) -> float:
    widths = dict(TAPS)
    return sum(widths[layer] * v for layer, v in values_by_layer.items()) / sum(widths[layer] for layer in values_by_layer)



def new_task(i: int, n: int, seed: int = 0) -> float:
    """Accuracy on task i right after training on it: flat for the first half, then falling."""
    return 0.9 - 0.01 * seed - (0.6 * (i - n / 2) / n if i > n / 2 else 0.0)


def online(i: int, n: int, seed: int = 0) -> float:
    return new_task(i, n, seed) - 0.05


def long_erank(layer: str, i: int, n: int) -> float:
    """Activation erank that starts falling at a third of the stream, before the accuracy does."""
    return ERANK_BASE[layer] * (1.0 - (0.5 * (i - n / 3) / n if i > n / 3 else 0.0))


def sparse_result(strategy="naive", seed=0, n_experiences=120, protocol="current", with_online=True,
                  include=("erank", "units")):
    """A long run under a sparse protocol: the accuracy matrix is T x T with null where not measured
    (``current``: only the diagonal; ``seen``: the lower triangle)."""
    n = n_experiences

    def cell(i, j):
        if protocol == "current" and i != j or protocol == "seen" and j > i:
            return None
        return new_task(j, n, seed) if i == j else 0.5
    records = []
    for e in range(n):
        for layer, _ in TAPS:
            if "erank" in include:
                records.append(_record("erank", "activation", layer, e, long_erank(layer, e, n)))
            if "units" in include:
                records.append(_record("dead_units", "activation", layer, e, dead(layer, e) / n))
    matrix = [[cell(i, j) for j in range(n)] for i in range(n)]
    result = {
        "schema_version": 1,
        "status": "complete",
        "config": {"stream": "permuted-mnist", "model": "mlp", "strategy": strategy, "seed": seed,
                   "evaluation": protocol},
        "stream": {"n_experiences": n},
        "taps": [{"name": name, "width": width} for name, width in TAPS],
        "accuracy_matrix": matrix,
        "summary": {"new_task_accuracy": [new_task(i, n, seed) for i in range(n)]},
        "metrics": records,
    }
    if with_online:
        result["online_accuracy"] = [online(i, n, seed) for i in range(n)]
    return result
