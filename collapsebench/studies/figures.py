"""Figures a study page can show: its own (below) and any of the report's, named ``report:NAME``.

Matplotlib loads only when a figure is drawn: reading a study file must stay cheap.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

#: name -> (title, caption); the drawing functions are ``_draw_<name>`` in this module.
OWN_FIGURES = {
    "forgetting_vs_erank_drop_by_model": (
        "Forgetting against activation-erank drop, per architecture",
        "One point per (run, experience j): how much j was forgotten by the end of the run against how far the "
        "layers' peak-normalized activation erank fell after j was learned; colours are strategies, one panel "
        "per architecture (and stream). A rising cloud is the claim that forgetting tracks collapse.",
    ),
    "cka_by_depth": (
        "Next-task CKA by layer depth",
        "For each tapped layer (shallow to deep), the linear CKA between experience j's representation right after "
        "training on j and after training on j+1, averaged over j; lines are strategies (mean over seeds, bars: min "
        "to max). Falling lines mean deeper layers change more.",
    ),
    "hessian_over_tasks": (
        "Hessian spectrum at each new task, and new-task accuracy",
        "Top: the loss Hessian's effective rank at the start of each new task (on its data), relative to the first "
        "task; middle: its top eigenvalue; bottom: accuracy on each task right after training on it. Lines are "
        "strategies (mean over seeds).",
    ),
    "forgetting_vs_option": (
        "Forgetting against the option the grid varies",
        "Each run's forgetting (accuracy on the first experiences after learning them minus at the end) against "
        "the numeric stream or model option its grid axis set (for task-similarity: how much the second task is "
        "the first); lines are strategies, the mean over seeds with its 95% t-interval, one panel per stream, "
        "model and value of any other varied option. A hump is forgetting largest in the middle.",
    ),
}
REPORT_PREFIX = "report:"


def known(name: str) -> bool:
    if name in OWN_FIGURES:
        return True
    if name.startswith(REPORT_PREFIX):
        from collapsebench.report.figures import all_figures  # the evaluators' declared figures too

        return name[len(REPORT_PREFIX):] in {spec.name for spec in all_figures()}
    return False


class _Known(dict):
    """``name in STUDY_FIGURES`` for the study reader; sorted() lists the study's own names."""

    def __contains__(self, name):
        return isinstance(name, str) and known(name)


STUDY_FIGURES = _Known({name: None for name in OWN_FIGURES})


def specs(names: Sequence[str]):
    from collapsebench.report.figures import FigureSpec, all_figures

    by_name = {spec.name: spec for spec in all_figures()}
    out = []
    for name in names:
        if name in OWN_FIGURES:
            title, caption = OWN_FIGURES[name]
            out.append(FigureSpec(name, title, caption, globals()[f"_draw_{name}"]))
        else:
            out.append(by_name[name[len(REPORT_PREFIX):]])
    return out


def _panels(runs):
    groups: dict[str, list] = {}
    for run in runs:
        key = f"{run.config.get('stream', '?')} · {run.config.get('model', '?')}"
        groups.setdefault(key, []).append(run)
    return groups


def _figure(n_panels: int, rows: int = 1, height: float = 3.6):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(max(4.5, 4.2 * n_panels), height * rows), layout="constrained")
    axes = fig.subplots(rows, n_panels, squeeze=False)
    return fig, axes


def _strategy_colors(runs) -> dict[str, str]:
    """The report's palette keyed by strategy name, so a strategy has one colour on every page."""
    from collapsebench.report.figures import colors_for

    return colors_for(r.strategy for r in runs)


def _draw_forgetting_vs_erank_drop_by_model(runs):
    from collapsebench.report.figures import MissingData
    from collapsebench.report.runs import forgetting_and_erank_drop
    from collapsebench.studies.checks import spearman

    groups, colors = _panels(runs), _strategy_colors(runs)
    points = {key: [(r.strategy, *forgetting_and_erank_drop(r)[1:]) for r in members] for key, members in groups.items()}
    if not any(drops for rows in points.values() for _, drops, _ in rows):
        raise MissingData("no run has a complete accuracy matrix and activation erank (evaluator 'activations')")
    fig, axes = _figure(len(groups))
    for ax, (key, rows) in zip(axes[0], points.items()):
        seen, xs, ys = set(), [], []
        for strategy, drops, forgotten in rows:
            ax.scatter(drops, forgotten, s=18, alpha=0.75, color=colors[strategy],
                       label=strategy if strategy not in seen else None)
            seen.add(strategy)
            xs += drops
            ys += forgotten
        rho = spearman(xs, ys) if len(xs) > 2 else math.nan
        ax.set_title(f"{key}  (pooled ρ = {rho:.2f})" if math.isfinite(rho) else key, fontsize=9)
        ax.set_xlabel("activation-erank drop after j (peak-normalized)")
        ax.set_ylabel("forgetting of j")
        ax.legend(fontsize=8)
    return fig


def _draw_cka_by_depth(runs):
    from collapsebench.report.figures import MissingData
    from collapsebench.studies.checks import _next_task_cka

    groups, colors = _panels(runs), _strategy_colors(runs)
    tables = {key: {} for key in groups}
    for key, members in groups.items():
        for run in members:
            by_layer = _next_task_cka(run)
            if by_layer:
                tables[key].setdefault(run.strategy, []).append(by_layer)
    if not any(tables.values()):
        raise MissingData("no run recorded CKA across consecutive experiences (evaluator 'cka')")
    fig, axes = _figure(len(groups))
    for ax, (key, by_strategy) in zip(axes[0], tables.items()):
        layers = []
        for strategy, rows in by_strategy.items():
            layers = list(rows[0])
            values = [[row.get(layer, math.nan) for layer in layers] for row in rows]
            columns = list(zip(*values))
            means = [sum(c) / len(c) for c in columns]
            ax.errorbar(range(len(layers)), means,
                        yerr=[[max(0.0, m - min(c)) for m, c in zip(means, columns)],
                              [max(0.0, max(c) - m) for m, c in zip(means, columns)]],
                        marker="o", capsize=3, color=colors[strategy], label=strategy)
        ax.set_xticks(range(len(layers)), layers, rotation=30, fontsize=8)
        ax.set_title(key, fontsize=9)
        ax.set_xlabel("tapped layer (shallow → deep)")
        ax.set_ylabel("CKA(after j, after j+1)")
        ax.legend(fontsize=8)
    return fig


def _mean_series(members, metric):
    from collapsebench.studies.checks import series

    tables = [series(r, metric) for r in members]
    keys = sorted({k for t in tables for k in t})
    return keys, [sum(t[k] for t in tables if k in t) / sum(k in t for t in tables) for k in keys]


def _draw_hessian_over_tasks(runs):
    from collapsebench.report.figures import MissingData

    if not any(r.has("hessian_erank", "model", "start") for r in runs):
        raise MissingData("no run recorded the Hessian at the start of a task (evaluator 'hessian')")
    colors = _strategy_colors(runs)
    fig, axes = _figure(1, rows=3, height=2.4)
    by_strategy: dict[str, list] = {}
    for run in runs:
        by_strategy.setdefault(run.strategy, []).append(run)
    for strategy, members in by_strategy.items():
        keys, values = _mean_series(members, "hessian_erank@model:start")
        if values and values[0]:
            axes[0][0].plot(keys, [v / values[0] for v in values], marker=".", color=colors[strategy], label=strategy)
        keys, values = _mean_series(members, "hessian_top_eigenvalues@model:start")
        axes[1][0].plot(keys, values, marker=".", color=colors[strategy], label=strategy)
        keys, values = _mean_series(members, "new_task_accuracy")
        axes[2][0].plot(keys, values, marker=".", color=colors[strategy], label=strategy)
    axes[0][0].set_ylabel("Hessian erank / first")
    axes[1][0].set_ylabel("top eigenvalue")
    axes[2][0].set_ylabel("new-task accuracy")
    axes[2][0].set_xlabel("task index")
    axes[0][0].legend(fontsize=8)
    return fig


def _varied_options(runs) -> tuple[list[str], list[str]]:
    """``(numeric, other)``: the stream and model options that take more than one value over ``runs``."""
    from collapsebench.studies.checks import option_value

    names = list(dict.fromkeys(k for r in runs for kind in ("stream", "model")
                               for k in (r.config.get(f"{kind}_options") or {})))
    numeric, other = [], []
    for name in names:
        values = [option_value(r, name) for r in runs]
        if len({repr(v) for v in values}) < 2:
            continue
        is_number = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
        (numeric if is_number else other).append(name)
    return numeric, other


def _draw_forgetting_vs_option(runs):
    from collapsebench.report.figures import MissingData
    from collapsebench.stats import interval
    from collapsebench.studies.checks import option_value, scalar

    numeric, other = _varied_options(runs)
    if not numeric:
        raise MissingData("the runs vary no numeric stream or model option (a grid's stream_axes or model_axes)")
    axis, rest = numeric[0], numeric[1:] + other
    measured = [r for r in runs if math.isfinite(scalar(r, "forgetting"))]
    if not measured:
        raise MissingData("no run has a forgetting summary (it needs the full accuracy matrix)")
    panels: dict[str, dict[str, dict[float, list[float]]]] = {}
    for run in measured:
        key = " · ".join([str(run.config.get("stream", "?")), str(run.config.get("model", "?"))]
                         + [f"{name}={option_value(run, name)}" for name in rest])
        by_value = panels.setdefault(key, {}).setdefault(run.strategy, {})
        by_value.setdefault(float(option_value(run, axis)), []).append(scalar(run, "forgetting"))
    colors = _strategy_colors(measured)
    fig, axes = _figure(len(panels))
    for ax, (key, by_strategy) in zip(axes[0], panels.items()):
        for strategy, by_value in by_strategy.items():
            xs = sorted(by_value)
            summaries = [interval(by_value[x]) for x in xs]
            means = [v.mean for v in summaries]
            ax.plot(xs, means, marker="o", color=colors[strategy], label=strategy)
            bands = [(x, v.low, v.high) for x, v in zip(xs, summaries) if v.low is not None]
            if bands:
                ax.fill_between([b[0] for b in bands], [b[1] for b in bands], [b[2] for b in bands],
                                color=colors[strategy], alpha=0.2, linewidth=0)
            for x in xs:
                ax.scatter([x] * len(by_value[x]), by_value[x], s=10, alpha=0.5, color=colors[strategy])
        ax.set_title(key, fontsize=9)
        ax.set_xlabel(axis)
        ax.set_ylabel("forgetting")
        ax.legend(fontsize=8)
    return fig
