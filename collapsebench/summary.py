"""The table printed at the end of a run."""

from __future__ import annotations

from tabulate import tabulate


def render_summary(result: dict) -> str:
    matrix = result["accuracy_matrix"]
    n = len(matrix[0]) if matrix else 0
    headers = ["after \\ on"] + [f"exp {j}" for j in range(n)]
    rows = [[f"exp {i}"] + [f"{v:.3f}" for v in row] for i, row in enumerate(matrix)]
    blocks = ["Accuracy matrix (row: after training on, column: tested on)", tabulate(rows, headers=headers)]
    summary = result.get("summary") or {}
    if summary:
        blocks += ["", tabulate([[k, _format(v)] for k, v in summary.items()], headers=["summary", "value"])]
    final = {}
    last = len(matrix) - 1
    for record in result.get("metrics", []):
        if record["phase"] == "end" and record["experience"] == last and record["value"] is not None:
            final.setdefault(record["layer"], {})[f"{record['name']} ({record['kind']})"] = record["value"]
    if final:
        # One row per metric, one column per layer: layers are few, metrics many.
        metrics = sorted({k for values in final.values() for k in values})
        layers = list(final)
        rows = [[m] + [_format(final[layer].get(m)) for layer in layers] for m in metrics]
        blocks += ["", "Collapse metrics after the last experience", tabulate(rows, headers=["metric"] + layers)]
    timing = result.get("timing", {})
    if timing:
        blocks += ["", "Time (s): " + ", ".join(f"{k} {v:.1f}" for k, v in timing.items())]
    return "\n".join(blocks)


def _format(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict):
        return ", ".join(f"{k} {_format(v)}" for k, v in value.items())
    return "-" if value is None else str(value)
