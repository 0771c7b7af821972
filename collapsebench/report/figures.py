"""The report's figures: one function per figure, each taking runs and returning a matplotlib ``Figure``.

Figures are built with ``matplotlib.figure.Figure`` directly, never through ``pyplot``: no
global backend is chosen, no GUI is touched, and nothing is kept alive in pyplot's figure
registry (which matters when TensorBoard images are drawn inside a training process). Saving a
``Figure`` renders it with the Agg canvas.

Several runs with the same label (seeds of one strategy) are pooled: lines show their mean and
a band, the 95% t-interval over the seeds (:mod:`collapsebench.stats`, the statistic of every
table), :data:`BAND_CAPTION` in words. Runs with different labels are overlaid in
different colours. A figure whose data no run has raises :class:`MissingData`, which the page
shows as a note instead of the figure.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import NullLocator

# Records a collapsebench plugin uses too: an evaluator declares its figures with them.
from collapsebench.records import FigureSpec, MissingData  # noqa: F401 (re-exported)
from collapsebench.report.runs import (
    Run,
    cka_records,
    forgetting_and_erank_drop,
    _series,
    group_runs,
    new_task_accuracy,
    online_accuracy,
    peak_normalized,
)

#: Most panels a figure draws along its time axis before it picks evenly spaced experiences.
MAX_PANELS = 6
#: Matrices up to this many cells on a side get their values written in.
ANNOTATE_UP_TO = 10
#: Long streams are drawn in about this many bins of consecutive tasks (each seed's bin mean).
MAX_POINTS = 50
DENSITY_FLOOR = 1e-7  # log-scale plots of a smoothed density need a floor where it is 0



#: The strategies' colours: each name hashes to one of matplotlib's tab10 (:func:`color_of`), so a
#: strategy has the same colour in every figure and report; the dark shades of tab20b (no pale
#: ones, which vanish on white) serve only a page of more than ten names.
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
           "#bcbd22", "#17becf", "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173", "#5254a3",
           "#8ca252", "#bd9e39", "#ad494a", "#a55194")


HASHED = 10  # the tab10 part of PALETTE


def color_of(label: str) -> str:
    """The colour a strategy's name hashes to (crc32: the same in every process, unlike hash())."""
    import zlib

    return PALETTE[zlib.crc32(label.encode()) % HASHED]


def _colors(runs: Sequence[Run]) -> dict[str, str]:
    return colors_for(group_runs(runs))


def colors_for(labels) -> dict[str, str]:
    """label -> colour: each name's own (:func:`color_of`); two names of one figure that hash to
    the same colour are told apart, the later name (alphabetically) taking the next free one.
    Every figure of the report and of a study page picks its colours here."""
    chosen: dict[str, str] = {}
    for label in sorted(set(labels)):
        slot = PALETTE.index(color_of(label))
        while PALETTE[slot] in chosen.values() and len(chosen) < len(PALETTE):
            slot = (slot + 1) % len(PALETTE)
        chosen[label] = PALETTE[slot]
    return chosen


#: What a band is, for the report's captions.
BAND_CAPTION = "lines: mean over seeds; bands: 95% t-interval over seeds (collapsebench.stats)"


def _seed_interval(column: np.ndarray) -> tuple[float, float]:
    from collapsebench.stats import interval

    finite = [float(v) for v in column if math.isfinite(v)]
    value = interval(finite)
    return (value.mean, value.mean) if value.low is None else (value.low, value.high)


def _band(series: Sequence[dict[int, float]]) -> tuple[list[int], np.ndarray, np.ndarray, np.ndarray]:
    """Pool several experience -> value series: (experiences, mean, low, high) over the finite
    values, low and high the 95% t-interval of the seeds (the mean alone where one seed has it)."""
    experiences = sorted({e for s in series for e in s})
    table = np.array([[s.get(e, math.nan) for e in experiences] for s in series], dtype=float)
    kept = [k for k in range(len(experiences)) if np.isfinite(table[:, k]).any()]
    table = table[:, kept]
    experiences = [experiences[k] for k in kept]
    if not experiences:
        return [], np.array([]), np.array([]), np.array([])
    bounds = np.array([_seed_interval(table[:, k]) for k in range(len(experiences))], dtype=float)
    return experiences, np.nanmean(table, axis=0), bounds[:, 0], bounds[:, 1]


def _plot_band(ax, series, label, color, marker="o", linestyle="-"):
    x, mean, low, high = _band(series)
    if not x:
        return False
    ax.plot(x, mean, marker=marker, linestyle=linestyle, color=color, label=label, markersize=4)
    if len(series) > 1:
        ax.fill_between(x, low, high, color=color, alpha=0.2, linewidth=0)
    return True


def _integer_ticks(ax, n: int) -> None:
    step = max(1, math.ceil(n / 10))
    ax.set_xticks(range(0, n, step))


def _n_experiences(runs: Sequence[Run]) -> int:
    return max(run.n_experiences for run in runs)


def _grid_shape(n: int, columns: int) -> tuple[int, int]:
    columns = min(n, columns)
    return math.ceil(n / columns), columns


def _spaced(items: Sequence, most: int = MAX_PANELS) -> list:
    """At most ``most`` items, evenly spaced, always the first and the last."""
    if len(items) <= most:
        return list(items)
    picks = sorted({round(k * (len(items) - 1) / (most - 1)) for k in range(most)})
    return [items[k] for k in picks]


def _annotate(ax, values: np.ndarray, fmt: str = "{:.2f}") -> None:
    rows, columns = values.shape
    if max(rows, columns) > ANNOTATE_UP_TO:
        return
    for i in range(rows):
        for j in range(columns):
            if np.isfinite(values[i, j]):
                ax.text(j, i, fmt.format(values[i, j]), ha="center", va="center", fontsize=7,
                        color="black" if values[i, j] > 0.6 else "white")


def accuracy_matrix(runs: Sequence[Run]) -> Figure:
    """Heatmap of R[i][j] per strategy (mean over seeds); cells of experiences not yet run stay blank."""
    groups = {label: members for label, members in group_runs(runs).items() if any(r.matrix for r in members)}
    if not groups:
        raise MissingData("no run has an accuracy matrix (did the first experience finish?)")
    size = _n_experiences(runs)
    rows, columns = _grid_shape(len(groups), 3)
    fig = Figure(figsize=(3.8 * columns + 1.2, 3.7 * rows + 0.8), layout="constrained")
    axes = fig.subplots(rows, columns, squeeze=False)
    image = None
    for ax, (label, members) in zip(axes.flat, groups.items()):
        stacked = np.full((len(members), size, size), math.nan)
        for k, run in enumerate(members):
            for i, row in enumerate(run.matrix[:size]):
                stacked[k, i, : len(row)] = row[:size]
        with warnings.catch_warnings():  # cells no seed reached stay nan, and numpy says so
            warnings.simplefilter("ignore", RuntimeWarning)
            mean = np.nanmean(stacked, axis=0)
        image = ax.imshow(np.ma.masked_invalid(mean), vmin=0.0, vmax=1.0, cmap="viridis")
        _annotate(ax, mean)
        seeds = f" ({len(members)} seeds)" if len(members) > 1 else ""
        ax.set_title(f"{label}{seeds}", fontsize=10)
        ax.set_xlabel("tested on experience j (index)")
        ax.set_ylabel("after training on experience i (index)")
        _integer_ticks(ax, size)
        ax.set_yticks(range(0, size, max(1, math.ceil(size / 10))))
    for ax in list(axes.flat)[len(groups):]:
        ax.set_visible(False)
    fig.colorbar(image, ax=axes, label="test accuracy (fraction correct)", shrink=0.9)
    fig.suptitle("Accuracy matrix R[i][j]")
    return fig


def erank_over_experiences(runs: Sequence[Run], kind: str) -> Figure:
    """One row per tapped layer: erank after each experience (left) and the same over its running peak (right)."""
    with_erank = [r for r in runs if r.has("erank", kind)]
    if not with_erank:
        raise MissingData(f"no run recorded {kind} erank (add the evaluator that measures it, e.g. --evaluators erank)")
    layers = list(dict.fromkeys(layer for r in with_erank for layer in r.layers("erank", kind)))
    colors = _colors(runs)
    size = _n_experiences(runs)
    fig = Figure(figsize=(9.0, 2.3 * len(layers) + 1.0), layout="constrained")
    axes = fig.subplots(len(layers), 2, squeeze=False, sharex=True)
    for row, layer in enumerate(layers):
        raw_ax, norm_ax = axes[row]
        for label, members in group_runs(with_erank).items():
            have = [r for r in members if layer in r.layers("erank", kind)]
            if not have:
                continue
            _plot_band(raw_ax, [r.by_experience("erank", kind, layer) for r in have], label, colors[label])
            _plot_band(norm_ax, [peak_normalized(r, kind, layer) for r in have], label, colors[label])
        raw_ax.set_ylabel(f"{layer}\nerank (dimensions)")
        norm_ax.set_ylabel("erank / running peak (ratio)")
        norm_ax.axhline(1.0, color="0.6", linewidth=0.8, linestyle=":")
        # Fixed, not autoscaled: a ratio of 0.999-1.000 must look flat, not like a collapse.
        norm_ax.set_ylim(0.0, 1.05)
    axes[0][0].set_title("raw effective rank", fontsize=10)
    axes[0][1].set_title("peak-normalized (1 = no collapse)", fontsize=10)
    for ax in axes[-1]:
        ax.set_xlabel("after training on experience (index)")
        _integer_ticks(ax, size)
    axes[0][1].legend(fontsize=8, loc="lower left")
    fig.suptitle(f"{kind.capitalize()} effective rank per layer over experiences")
    return fig


def weight_erank(runs: Sequence[Run]) -> Figure:
    return erank_over_experiences(runs, "weight")


def activation_erank(runs: Sequence[Run]) -> Figure:
    return erank_over_experiences(runs, "activation")


def forgetting_vs_erank_drop(runs: Sequence[Run]) -> Figure:
    """Per experience j < T−1: forgetting of j against the drop of activation erank since j, with r per strategy."""
    from collapsebench.metrics.analysis import correlate

    colors = _colors(runs)
    fig = Figure(figsize=(7.0, 5.0), layout="constrained")
    ax = fig.subplots()
    drawn = 0
    for label, members in group_runs(runs).items():
        xs, ys, names = [], [], []
        for run in members:
            experiences, drops, forgetting = forgetting_and_erank_drop(run)
            xs += drops
            ys += forgetting
            names += experiences
        if not xs:
            continue
        drawn += 1
        r = correlate(xs, ys)
        legend = f"{label}: Pearson r = {_fmt(r.r_pearson)}, Spearman ρ = {_fmt(r.r_spearman)} (n = {r.n})"
        ax.scatter(xs, ys, color=colors[label], label=legend, s=28, alpha=0.85)
        if len(xs) <= 3 * ANNOTATE_UP_TO:
            for x, y, j in zip(xs, ys, names):
                ax.annotate(str(j), (x, y), textcoords="offset points", xytext=(4, 3), fontsize=7, color=colors[label])
        if r.n >= 3 and np.ptp(xs) > 0:
            slope, intercept = np.polyfit(xs, ys, 1)
            line_x = np.array([min(xs), max(xs)])
            ax.plot(line_x, slope * line_x + intercept, color=colors[label], linewidth=1, linestyle="--")
    if not drawn:
        raise MissingData("needs a complete run (every experience finished) with activation erank recorded")
    ax.axhline(0.0, color="0.7", linewidth=0.8)
    ax.axvline(0.0, color="0.7", linewidth=0.8)
    ax.set_xlabel("activation erank drop since j (peak-normalized, fraction of peak; layer mean)")
    ax.set_ylabel("forgetting of experience j (accuracy, fraction)")
    ax.legend(fontsize=8, loc="best")
    fig.suptitle("Forgetting against collapse, per experience (Zhu & Jin)")
    return fig


def _fmt(value: float) -> str:
    return "n/a" if not math.isfinite(value) else f"{value:.2f}"


def _cka_table(members: Sequence[Run], probe: int, layers: Sequence[str]) -> tuple[list[int], np.ndarray]:
    """Mean over runs of CKA[layer][later experience] for one probe experience."""
    cells: dict[tuple[str, int], list[float]] = {}
    for run in members:
        for layer, j, later, value in cka_records(run):
            if j == probe:
                cells.setdefault((layer, later), []).append(value)
    later = sorted({e for _, e in cells})
    table = np.full((len(layers), len(later)), math.nan)
    for (layer, e), values in cells.items():
        if layer in layers:
            table[layers.index(layer), later.index(e)] = sum(values) / len(values)
    return later, table


def _layer_order(members: Sequence[Run], layers: set[str]) -> list[str]:
    """Tapped layers in depth order, then any others."""
    taps = list(dict.fromkeys(t for run in members for t in run.tap_widths))
    return [t for t in taps if t in layers] + sorted(layers - set(taps))


def cka_by_layer(runs: Sequence[Run]) -> Figure:
    """Per strategy (rows) and probe experience j (columns): a layer × later-experience heatmap of linear CKA."""
    groups = {label: [r for r in members if cka_records(r)] for label, members in group_runs(runs).items()}
    groups = {label: members for label, members in groups.items() if members}
    if not groups:
        raise MissingData("no run recorded layer-wise CKA (add the cka evaluator)")
    probes = sorted({j for members in groups.values() for run in members for _, j, _, _ in cka_records(run)})
    shown = _spaced(probes, 4)
    fig = Figure(figsize=(3.2 * len(shown) + 1.5, 2.8 * len(groups) + 0.8), layout="constrained")
    axes = fig.subplots(len(groups), len(shown), squeeze=False)
    image = None
    for row, (label, members) in enumerate(groups.items()):
        layers = _layer_order(members, {layer for run in members for layer, _, _, _ in cka_records(run)})
        for column, probe in enumerate(shown):
            ax = axes[row][column]
            later, table = _cka_table(members, probe, layers)
            if not later:
                ax.set_visible(False)
                continue
            image = ax.imshow(np.ma.masked_invalid(table), vmin=0.0, vmax=1.0, cmap="magma", aspect="auto")
            _annotate(ax, table)
            ax.set_xticks(range(len(later)), [str(e) for e in later])
            ax.set_yticks(range(len(layers)), layers if column == 0 else [""] * len(layers))
            ax.set_xlabel("after training on experience (index)")
            ax.set_title(f"{label}: inputs of experience {probe}", fontsize=9)
        axes[row][0].set_ylabel("layer (input side at top)")
    fig.colorbar(image, ax=axes, label="linear CKA with the representation right after experience j (0–1)", shrink=0.9)
    note = "" if len(shown) == len(probes) else f" (probe experiences {', '.join(map(str, shown))} of {len(probes)})"
    fig.suptitle(f"Layer-wise representation similarity, CKA (Ramasesh et al.){note}")
    return fig


WHOLE_MODEL = {"model", "all"}


def _density_block(run: Run) -> tuple[str, str] | None:
    """(kind, layer) of the run's whole-model Hessian density records, else of its first ones."""
    blocks = list(dict.fromkeys((r["kind"], r["layer"]) for r in run.select("hessian_density", None, phase=None)))
    whole = [b for b in blocks if b[0] in WHOLE_MODEL or b[1] in WHOLE_MODEL]
    return (whole or blocks or [None])[0]


def _smoothed(curves: Sequence[dict], grid: np.ndarray, sigma: float) -> np.ndarray:
    from collapsebench.metrics.hessian import HessianDensity, smooth_density

    values = [smooth_density(HessianDensity(list(c["nodes"]), list(c["weights"]), 0), sigma=sigma, grid=grid)[1]
              for c in curves]
    return np.mean(np.array(values, dtype=float), axis=0)


def hessian_density(runs: Sequence[Run]) -> Figure:
    """Per strategy (rows) and experience t (columns): the Hessian's spectral density at the end of t
    (solid) and at the start of t+1 (dashed), each smoothed on a grid shared by the column."""
    colors = _colors(runs)
    curves: dict[tuple[str, int, str], list[dict]] = {}  # (label, boundary experience t, phase) -> densities
    for run in runs:
        block = _density_block(run)
        if block is None:
            continue
        for phase, shift in (("end", 0), ("start", -1)):
            for experience, data in run.data_by_experience("hessian_density", *block, phase).items():
                if isinstance(data, dict) and data.get("nodes") and data.get("weights"):
                    curves.setdefault((run.label, experience + shift, phase), []).append(data)
    if not curves:
        raise MissingData("no run recorded the Hessian density (add the hessian evaluator)")
    labels = [label for label in group_runs(runs) if any(key[0] == label for key in curves)]
    boundaries = _spaced(sorted({t for _, t, _ in curves}), 4)
    fig = Figure(figsize=(3.4 * len(boundaries) + 0.8, 2.9 * len(labels) + 0.9), layout="constrained")
    axes = fig.subplots(len(labels), len(boundaries), squeeze=False, sharey=True, sharex="col")
    peak = DENSITY_FLOOR
    for column, t in enumerate(boundaries):
        here = {key: value for key, value in curves.items() if key[1] == t}
        nodes = np.array([x for densities in here.values() for d in densities for x in d["nodes"]], dtype=float)
        spread = float(np.ptp(nodes))
        sigma = 0.01 * spread if spread > 0 else max(1e-3 * float(np.abs(nodes).max()), 1e-12)
        grid = np.linspace(nodes.min() - 3 * sigma, nodes.max() + 3 * sigma, 600)
        for row, label in enumerate(labels):
            ax = axes[row][column]
            for phase, style, name in (("end", "-", f"end of {t}"), ("start", "--", f"start of {t + 1}")):
                if (label, t, phase) in here:
                    values = np.maximum(_smoothed(here[(label, t, phase)], grid, sigma), DENSITY_FLOOR)
                    ax.plot(grid, values, color=colors[label], linestyle=style, linewidth=1.2, label=name)
                    peak = max(peak, float(values.max()))
            ax.set_yscale("log")
            ax.yaxis.set_minor_locator(NullLocator())  # minor log ticks cost most of the drawing time
            if ax.lines and column == 0:  # solid and dashed mean the same in every column: one legend a row
                ax.legend(fontsize=7, loc="upper right")
            if row == 0:
                ax.set_title(f"experience {t} → {t + 1}" if t + 1 < _n_experiences(runs) else f"end of experience {t}",
                             fontsize=10)
            if row == len(labels) - 1:
                ax.set_xlabel("Hessian eigenvalue λ (loss / parameter²)")
    # Four decades below the highest peak: the floor far below is empty space, not information.
    axes[0][0].set_ylim(max(DENSITY_FLOOR, peak * 1e-4), peak * 3)
    for row, label in enumerate(labels):
        axes[row][0].set_ylabel(f"{label}\nspectral density (per unit λ, log)")
    fig.suptitle("Hessian spectral density at the end of each experience and the start of the next (He et al.)")
    return fig


def _unit_fraction(run: Run, name: str) -> dict[int, float]:
    """experience -> fraction of all tapped units (layers weighted by width) that are dead or dormant."""
    widths = run.tap_widths
    totals: dict[int, list[float]] = {}
    for layer in run.layers(name, "activation"):
        weight = widths.get(layer) or 1
        for experience, value in run.by_experience(name, "activation", layer).items():
            if math.isfinite(value):
                acc = totals.setdefault(experience, [0.0, 0.0])
                acc[0] += weight * value
                acc[1] += weight
    return {e: s / w for e, (s, w) in totals.items() if w > 0}


def dead_and_dormant_units(runs: Sequence[Run]) -> Figure:
    """Fraction of tapped units that are dead (left) and dormant (right) after each experience."""
    panels = [(name, title) for name, title in (("dead_units", "dead units (zero on every probe input)"),
                                                ("dormant_units", "dormant units (Sokar et al., τ = 0.025)"))
              if any(r.has(name, "activation") for r in runs)]
    if not panels:
        raise MissingData("no run recorded dead_units or dormant_units (add the activations evaluator)")
    colors = _colors(runs)
    size = _n_experiences(runs)
    fig = Figure(figsize=(4.6 * len(panels) + 0.6, 3.8), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (name, title) in zip(axes, panels):
        for label, members in group_runs(runs).items():
            have = [r for r in members if r.has(name, "activation")]
            if have:
                _plot_band(ax, [_unit_fraction(r, name) for r in have], label, colors[label])
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("after training on experience (index)")
        ax.set_ylabel("fraction of tapped units (0–1)")
        ax.set_ylim(0.0, 1.0)
        _integer_ticks(ax, size)
        ax.legend(fontsize=8, loc="upper left")
    fig.suptitle("Dead and dormant units over experiences (Dohare et al.)")
    return fig


def bin_width(n_tasks: int, most: int = MAX_POINTS) -> int:
    """Consecutive tasks per bin so that at most ``most`` bins cover ``n_tasks`` (1: no binning)."""
    return max(1, math.ceil(n_tasks / most))


def binned(series: dict[int, float], width: int) -> dict[float, float]:
    """Means of a task -> value series over bins of ``width`` consecutive tasks, placed at the
    bin's middle task index; bins without a finite value are left out."""
    if width <= 1:
        return {float(k): v for k, v in series.items() if math.isfinite(v)}
    sums: dict[int, list[float]] = {}
    for task, value in series.items():
        if math.isfinite(value):
            acc = sums.setdefault(task // width, [0.0, 0])
            acc[0] += value
            acc[1] += 1
    return {b * width + (width - 1) / 2: total / count for b, (total, count) in sums.items()}


def _mean_over_layers(run: Run) -> dict[int, float]:
    """experience -> peak-normalized activation erank, mean over tapped layers."""
    values: dict[int, list[float]] = {}
    for layer in run.layers("erank", "activation"):
        for experience, value in peak_normalized(run, "activation", layer).items():
            if math.isfinite(value):
                values.setdefault(experience, []).append(value)
    return {e: sum(v) / len(v) for e, v in values.items()}


def plasticity_over_tasks(runs: Sequence[Run]) -> Figure:
    """Accuracy on each task right after training on it against the task index, with the collapse
    metrics against the same index below, so that their timing can be compared."""
    with_accuracy = [r for r in runs if new_task_accuracy(r) or online_accuracy(r)]
    if not with_accuracy:
        raise MissingData("no run measured the accuracy on a task right after training on it "
                          "(did the first experience finish?)")
    colors = _colors(runs)
    size = _n_experiences(with_accuracy)
    width = bin_width(size)
    panels = [("accuracy", "accuracy on the new task\n(fraction correct)")]
    if any(r.has("erank", "activation") for r in with_accuracy):
        panels.append(("erank", "activation erank / peak\n(ratio, layer mean)"))
    if any(r.has("dead_units", "activation") for r in with_accuracy):
        panels.append(("dead", "dead units\n(fraction of tapped units)"))
    if any(_series(r.summary.get("plasticity")) for r in with_accuracy):
        panels.append(("fresh", "plasticity: R[i][i] over a\nfresh network's accuracy (ratio)"))
    fig = Figure(figsize=(8.5, 2.6 * len(panels) + 1.0), layout="constrained")
    axes = fig.subplots(len(panels), 1, squeeze=False, sharex=True)[:, 0]
    for ax, (panel, ylabel) in zip(axes, panels):
        for label, members in group_runs(with_accuracy).items():
            color = colors[label]
            if panel == "accuracy":
                tested = [new_task_accuracy(r) for r in members if new_task_accuracy(r)]
                online = [online_accuracy(r) for r in members if online_accuracy(r)]
                if tested:
                    _plot_band(ax, [binned(s, width) for s in tested], f"{label}: test, R[i][i]", color, marker=".")
                if online:
                    _plot_band(ax, [binned(s, width) for s in online], f"{label}: online (training)", color,
                               marker="", linestyle="--")
            elif panel == "erank":
                have = [_mean_over_layers(r) for r in members if r.has("erank", "activation")]
                if have:
                    _plot_band(ax, [binned(s, width) for s in have], label, color, marker=".")
            elif panel == "fresh":
                have = [_series(r.summary.get("plasticity")) for r in members if _series(r.summary.get("plasticity"))]
                if have:
                    _plot_band(ax, [binned(s, width) for s in have], label, color, marker=".")
            else:
                have = [_unit_fraction(r, "dead_units") for r in members if r.has("dead_units", "activation")]
                if have:
                    _plot_band(ax, [binned(s, width) for s in have], label, color, marker=".")
        ax.set_ylabel(ylabel)
        if panel == "fresh":
            ax.axhline(1.0, color="0.6", linewidth=0.8, linestyle=":")  # as plastic as a fresh network
            ax.set_ylim(bottom=0.0)
        else:  # fractions and ratios to a peak: fixed, so that a flat curve looks flat
            ax.set_ylim(0.0, 1.0 if panel == "dead" else 1.05)
        if ax.lines:
            ax.legend(fontsize=7, loc="best")
    per_bin = "" if width == 1 else f", mean of each {width} consecutive tasks"
    axes[-1].set_xlabel(f"task (experience index{per_bin})")
    _integer_ticks(axes[-1], size)
    missing = [name for name, key in (("activation erank", "erank"), ("dead units", "dead")) if key not in dict(panels)]
    note = f" (not recorded: {', '.join(missing)})" if missing else ""
    fig.suptitle(f"Plasticity over tasks: accuracy on each new task, and collapse below{note}")
    return fig


def average_accuracy_curve(runs: Sequence[Run]) -> Figure:
    """The standard continual-learning curve: after each experience i, the mean test accuracy
    over the experiences seen so far (0..i, the cells the protocol measured)."""
    colors = _colors(runs)
    fig = Figure(figsize=(7.0, 4.2), layout="constrained")
    ax = fig.subplots()
    for label, members in group_runs(runs).items():
        _plot_band(ax, [seen_average(r) for r in members], label, colors[label])
    if not ax.lines:
        raise MissingData("no run finished an experience")
    ax.set_ylim(0.0, 1.0)
    ax.set_xlabel("after training on experience (index)")
    ax.set_ylabel("mean accuracy on the experiences seen\n(fraction correct)")
    _integer_ticks(ax, _n_experiences(runs))
    ax.legend(fontsize=8, loc="lower left")
    fig.suptitle("Average accuracy after each experience")
    return fig


def seen_average(run: Run) -> dict[int, float]:
    """experience i -> mean of row i of the accuracy matrix over columns 0..i that were measured."""
    averages = {}
    for i, row in enumerate(run.matrix):
        seen = [v for v in row[: i + 1] if isinstance(v, (int, float)) and math.isfinite(v)]
        if seen:
            averages[i] = sum(seen) / len(seen)
    return averages


def _ranked_summaries(runs: Sequence[Run]) -> list[tuple[str, str, tuple[float, float] | None]]:
    """(name, axis label, bounds) of the rankable summaries (declared with a direction) some run has."""
    from collapsebench.declarations import catalog

    found = []
    for summary in catalog().summaries.values():
        if summary.higher_is_better is None:
            continue
        if any(isinstance(r.summary.get(summary.name), (int, float)) for r in runs):
            arrow = "higher is better" if summary.higher_is_better else "lower is better"
            found.append((summary.name, f"{summary.header} ({arrow})", summary.bounds))
    return found


def ranked_metrics(runs: Sequence[Run]) -> Figure:
    """One panel per rankable summary: a bar per strategy at its mean over seeds, with the 95%
    t-interval (truncated to the metric's bounds) as an error bar."""
    from collapsebench.stats import interval

    metrics = _ranked_summaries(runs)
    if not metrics:
        raise MissingData("no run has a rankable summary (did a run finish?)")
    colors = _colors(runs)
    groups = group_runs(runs)
    columns = min(3, len(metrics))
    rows = math.ceil(len(metrics) / columns)
    fig = Figure(figsize=(3.4 * columns + 0.6, 2.4 * rows + 0.5 + 0.18 * len(groups)), layout="constrained")
    axes = fig.subplots(rows, columns, squeeze=False).ravel()
    for ax, (name, ylabel, bounds) in zip(axes, metrics):
        for k, (label, members) in enumerate(groups.items()):
            values = [float(r.summary[name]) for r in members if isinstance(r.summary.get(name), (int, float))
                      and math.isfinite(r.summary[name])]
            if not values:
                continue
            estimate = interval(values, bounds=bounds)
            ax.bar(k, estimate.mean, color=colors[label], width=0.7, label=label)
            if estimate.low is not None:
                ax.errorbar(k, estimate.mean, yerr=[[estimate.mean - estimate.low], [estimate.high - estimate.mean]],
                            color="black", capsize=3, linewidth=1)
        ax.set_xticks(range(len(groups)), list(groups), rotation=30, ha="right", fontsize=8)
        ax.set_ylabel(ylabel, fontsize=8)
        ax.set_xlabel("strategy (bar: mean over seeds)", fontsize=8)
        if bounds == (0.0, 1.0):
            ax.set_ylim(0.0, 1.0)
    for ax in axes[len(metrics):]:
        ax.set_visible(False)
    fig.suptitle("Ranked metrics per strategy: mean over seeds, 95% t-interval (collapsebench.stats)")
    return fig


FIGURES: tuple[FigureSpec, ...] = (
    FigureSpec(
        "average_accuracy", "Average accuracy after each experience",
        "After each experience, the mean test accuracy over the experiences trained so far, the standard "
        "continual-learning curve: a strategy that neither forgets nor stops learning stays flat near the top.",
        average_accuracy_curve,
    ),
    FigureSpec(
        "ranked_metrics", "Ranked metrics per strategy",
        "Each bar is a strategy's mean over its seeds on a metric the leaderboard can rank, and each error "
        "bar its 95% t-interval truncated to the metric's bounds: bars whose intervals overlap are not told apart.",
        ranked_metrics,
    ),
    FigureSpec(
        "accuracy_matrix", "Accuracy matrix",
        "Row i holds the test accuracy on every experience after training on experience i: a bright "
        "diagonal means each new experience is learned, and cells fading below it are forgetting.",
        accuracy_matrix,
    ),
    FigureSpec(
        "weight_erank", "Weight effective rank per layer",
        "Left, each tapped layer's weight erank after every experience; right, the same divided by its "
        "running peak, so a curve falling below 1 shows that layer's weights collapsing onto fewer directions.",
        weight_erank,
    ),
    FigureSpec(
        "activation_erank", "Activation effective rank per layer",
        "Left, the effective rank of each tapped layer's activations on the fixed probe set after every "
        "experience; right, normalized by its running peak: the lower and earlier a curve drops below 1, "
        "the more of its representational capacity that layer has lost.",
        activation_erank,
    ),
    FigureSpec(
        "forgetting_vs_erank_drop", "Forgetting against activation-erank drop",
        "Each point is one experience j (labelled), placing how much it was forgotten by the end of the run "
        "against how far the layers' peak-normalized activation erank fell after j was learned; a positive r "
        "means the experiences followed by larger collapses are the ones forgotten most.",
        forgetting_vs_erank_drop,
    ),
    FigureSpec(
        "cka_by_layer", "Layer-wise CKA",
        "Each cell is the linear CKA between a layer's representation of experience j's inputs right "
        "after training on j and after a later experience: rows that stay near 1 kept their features, "
        "and dark rows (usually the deeper layers) are where forgetting happens.",
        cka_by_layer,
    ),
    FigureSpec(
        "hessian_density", "Hessian spectral density",
        "Solid curves are the loss Hessian's eigenvalue density at the end of an experience and dashed "
        "ones at the start of the next on its new data: mass piling up at λ ≈ 0 with few large outliers "
        "is the sparse spectrum that precedes lost plasticity.",
        hessian_density,
    ),
    FigureSpec(
        "plasticity_over_tasks", "Plasticity over tasks",
        "Top, the accuracy on each task right after training on it (test, and online on its training "
        "minibatches where recorded) against the task index, binned on long streams; below, on the same "
        "axis, peak-normalized activation erank and the share of dead units, so a network whose collapse "
        "precedes its loss of plasticity shows the lower curves falling before the top one does.",
        plasticity_over_tasks,
    ),
    FigureSpec(
        "dead_and_dormant_units", "Dead and dormant units",
        "The share of tapped units that never fire (dead) or fire far less than the layer's average "
        "(dormant) after each experience: a rising curve means the network is losing usable units, "
        "and with them the capacity to learn new experiences.",
        dead_and_dormant_units,
    ),
)


def all_figures() -> tuple[FigureSpec, ...]:
    """The report's own figures, then those the loaded evaluators declare (collapsebench.declarations)."""
    from collapsebench.declarations import catalog

    own = {spec.name for spec in FIGURES}
    return FIGURES + tuple(spec for name, spec in catalog().figures.items() if name not in own)
