"""The hessian evaluator's figure: the spectral density at each new task's start, over tasks.

He et al. (2025) read loss of plasticity in the Hessian's spectrum at the initialization of each
new task: a spectrum whose mass drains into a few large outliers and a spike near 0 (sparse)
comes before the network stops learning. This heatmap shows that history at a glance: x the
task index, y the eigenvalue on a log axis, colour how much of the spectrum lies there.

The density is the evaluator's stochastic Lanczos quadrature (point masses ``nodes`` with
``weights``, summing to 1), smoothed with a Gaussian in log10(λ) so that the colour is spectral
weight per decade of λ. A log axis holds only positive eigenvalues, and the bulk of a network's
spectrum sits at λ ≈ 0 with either sign (Lanczos puts nearly all weight on one node there): so
the weight at |λ| below the axis's lower end, of either sign, is drawn in the axis's bottom row
(the near-zero mass that grows as the spectrum turns sparse), and negative eigenvalues beyond it
are left out. Imports matplotlib and numpy only when drawn.
"""

from __future__ import annotations

import math

#: Width of the smoothing Gaussian, in decades of λ.
SIGMA_DECADES = 0.08
#: Decades of λ below the largest eigenvalue that the y axis spans.
DECADES = 5
#: Decades of spectral weight the colours span: outliers carry 1e-6 of the weight, the bulk ~1.
COLOUR_DECADES = 7
ROWS = 200
WHOLE_MODEL = ("model", "all")


def _whole_model_block(run):
    blocks = list(dict.fromkeys((r["kind"], r["layer"]) for r in run.select("hessian_density", None, phase="start")))
    whole = [b for b in blocks if b[0] in WHOLE_MODEL or b[1] in WHOLE_MODEL]
    return (whole or blocks or [None])[0]


def start_densities(runs) -> dict[str, dict[int, list[dict]]]:
    """label -> task index -> the start-of-task densities of its runs (one per seed): the runs'
    labels are the report's groups (a strategy, or stream · model · strategy)."""
    found: dict[str, dict[int, list[dict]]] = {}
    for run in runs:
        block = _whole_model_block(run)
        if block is None:
            continue
        for task, data in run.data_by_experience("hessian_density", *block, "start").items():
            if isinstance(data, dict) and data.get("nodes") and data.get("weights"):
                found.setdefault(run.label or run.strategy, {}).setdefault(task, []).append(data)
    return found


def per_decade(density: dict, log_grid):
    """Spectral weight per decade of λ at ``log_grid`` (log10 λ, increasing): each positive node's
    weight spread as a Gaussian of width :data:`SIGMA_DECADES` in log10 λ; nodes with |λ| below
    ``10 ** log_grid[0]`` (either sign) counted at the grid's lower end, negative ones beyond it left out."""
    import numpy as np

    nodes = np.asarray(density["nodes"], dtype=float)
    weights = np.asarray(density["weights"], dtype=float)
    floor = float(log_grid[0])
    near_zero = np.abs(nodes) < 10**floor
    keep = near_zero | (nodes > 0)
    if not keep.any():
        return np.zeros_like(log_grid)
    centres = np.where(near_zero, floor, np.log10(np.where(nodes > 0, nodes, 1.0)))[keep]
    mass = weights[keep]
    z = (log_grid[:, None] - centres[None, :]) / SIGMA_DECADES
    return (np.exp(-0.5 * z**2) / (SIGMA_DECADES * math.sqrt(2 * math.pi))) @ mass


def density_over_tasks(runs):
    import numpy as np
    from matplotlib.colors import LogNorm
    from matplotlib.figure import Figure

    from collapsebench import MissingData

    found = start_densities(runs)
    if not found:
        raise MissingData("no run recorded the Hessian density at the start of a task (evaluator 'hessian')")
    positive = [x for tasks in found.values() for densities in tasks.values() for d in densities
                for x in d["nodes"] if x > 0]
    if not positive:
        raise MissingData("every recorded Hessian eigenvalue is 0 or negative: nothing to draw on a log axis")
    top = math.log10(max(positive)) + 3 * SIGMA_DECADES
    log_grid = np.linspace(top - DECADES, top, ROWS)
    tables = {}
    for label, tasks in found.items():
        xs = sorted(tasks)
        tables[label] = (xs, np.array([np.mean([per_decade(d, log_grid) for d in tasks[x]], axis=0) for x in xs]))
    peak = max(float(table.max()) for _, table in tables.values())
    floor = peak * 10.0 ** -COLOUR_DECADES
    norm = LogNorm(vmin=floor, vmax=peak)
    fig = Figure(figsize=(8.0, 2.6 * len(tables) + 0.8), layout="constrained")
    axes = fig.subplots(len(tables), 1, squeeze=False, sharex=True, sharey=True)
    edges = 10 ** np.concatenate([[log_grid[0] - (log_grid[1] - log_grid[0]) / 2],
                                  (log_grid[1:] + log_grid[:-1]) / 2,
                                  [log_grid[-1] + (log_grid[1] - log_grid[0]) / 2]])
    mesh = None
    for ax, (label, (xs, table)) in zip(axes[:, 0], tables.items()):
        x_edges = np.concatenate([[xs[0] - 0.5], [(a + b) / 2 for a, b in zip(xs, xs[1:])], [xs[-1] + 0.5]])
        mesh = ax.pcolormesh(x_edges, edges, np.maximum(table.T, floor), norm=norm, cmap="magma",
                             shading="flat")
        ax.set_yscale("log")
        ax.set_ylabel(f"{label}\neigenvalue λ (log)")
    axes[-1][0].set_xlabel("task index (the Hessian on its data, before training on it)")
    fig.suptitle("Hessian spectral density at the initialization of each new task (He et al.)")
    fig.colorbar(mesh, ax=axes[:, 0].tolist(), label="spectral weight per decade of λ (mean over seeds)")
    return fig
