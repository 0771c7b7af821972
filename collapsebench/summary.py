"""The table printed at the end of a run."""

from __future__ import annotations

import math

from tabulate import tabulate


#: Beyond this many experiences the matrix is too wide to print; new-task accuracy is shown in bins.
MATRIX_MAX = 20
BINS = 10


def render_summary(result: dict) -> str:
    matrix = result["accuracy_matrix"]
    n = len(matrix[0]) if matrix else 0
    protocol = (result.get("evaluation") or {}).get("protocol", "full")
    if n <= MATRIX_MAX:
        headers = ["after \\ on"] + [f"exp {j}" for j in range(n)]
        rows = [[f"exp {i}"] + ["-" if v is None else f"{v:.3f}" for v in row] for i, row in enumerate(matrix)]
        blocks = [f"Accuracy matrix (row: after training on, column: tested on; evaluation {protocol})",
                  tabulate(rows, headers=headers)]
    else:
        blocks = [f"Accuracy on each task just after training on it, and online accuracy (evaluation {protocol})",
                  tabulate(_binned(matrix, result.get("online_accuracy") or []), headers=["tasks", "new task", "online"])]
    summary = result.get("summary") or {}
    if summary:
        blocks += ["", tabulate([[k, _format(v)] for k, v in summary.items()], headers=["summary", "value"])]
    unavailable = result.get("summary_unavailable") or {}
    if unavailable:
        blocks += ["", "Not reported: " + "; ".join(f"{k} ({why})" for k, why in unavailable.items())]
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


def _binned(matrix, online) -> list[list[str]]:
    """Means of R[i][i] and of the online accuracy over BINS consecutive ranges of tasks."""
    n = len(matrix)
    rows = []
    for b in range(min(BINS, n)):
        lo, hi = b * n // BINS if n >= BINS else b, (b + 1) * n // BINS if n >= BINS else b + 1
        diagonal = [matrix[i][i] for i in range(lo, hi) if i < len(matrix[i]) and matrix[i][i] is not None]
        online_part = [a for a in online[lo:hi] if a is not None]
        rows.append([f"{lo}-{hi - 1}", _mean(diagonal), _mean(online_part)])
    return rows


def _mean(values) -> str:
    return f"{sum(values) / len(values):.3f}" if values else "-"


def _format(value) -> str:
    if isinstance(value, list) and len(value) > 6:
        return f"{len(value)} values: {_format(value[0])} ... {_format(value[-1])}"
    if isinstance(value, list):
        return "[" + ", ".join(_format(v) for v in value) + "]"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4g}"
    if isinstance(value, dict):
        text = ", ".join(f"{k} {_format(v)}" for k, v in value.items())
        if _is_undefined_correlation(value):
            text += f" ({UNDEFINED_CORRELATION})"
        return text
    return "-" if value is None else str(value)


#: Why a correlation reads nan: analysis.pearson's conditions, said for people.
UNDEFINED_CORRELATION = "undefined: fewer than 3 finite pairs, or one of the two series is constant"


def _is_undefined_correlation(value: dict) -> bool:
    return any(isinstance(value.get(k), float) and math.isnan(value[k]) for k in ("pearson", "spearman"))


def render_seed_summary(results: list[dict]) -> str:
    """Each numeric summary of several seeds' results as its mean and 95% t-interval over them."""
    from collapsebench.stats import format_interval, label, metric_interval

    keys = list(dict.fromkeys(k for result in results for k in (result.get("summary") or {})))
    rows = []
    for key in keys:
        values = [_scalar((result.get("summary") or {}).get(key)) for result in results]
        numbers = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)]
        if numbers:
            rows.append([key, format_interval(metric_interval(key, numbers)), len(numbers)])
    if not rows:
        return ""
    seeds = sorted(result.get("config", {}).get("seed") for result in results if result.get("config"))
    title = f"Summary over seeds {', '.join(map(str, seeds))}: {label(len(results))}" if seeds else \
        f"Summary over seeds: {label(len(results))}"
    return title + "\n" + tabulate(rows, headers=["summary", "mean (95% t-interval)", "seeds"])


def _scalar(value):
    """A per-task series (new-task accuracy) counts as its mean over tasks, as on the board."""
    if isinstance(value, list) and value and all(isinstance(v, (int, float)) for v in value):
        return sum(value) / len(value)
    return value
