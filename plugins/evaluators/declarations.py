"""What the built-in evaluators produce: metric names, summaries and how to recompute them.

Pure Python, no torch: the leaderboard reads these to validate and rank submissions. Each
``recompute`` takes a run as a submission stores it (``summary``, ``collapse`` series named
``<metric>/<kind>/<layer>`` with one value per experience, ``taps``, ``accuracy_matrix``,
``resolved_options``) and raises ValueError saying what is missing.
"""

from __future__ import annotations

from collapsebench import FigureSpec, Metric, Summary
from collapsebench.metrics.accuracy import retention

TOLERANCE = 1e-9  # recomputing repeats the same float operations

WEIGHT_METRICS = ("erank", "erank_peak_normalized", "stable_rank", "srank", "approx_rank", "weight_magnitude")
ACTIVATION_METRICS = ("erank", "erank_peak_normalized", "srank", "feature_rank", "dead_units", "dormant_units",
                      "feature_norm")
HESSIAN_METRICS = ("hessian_top_eigenvalues", "hessian_trace", "hessian_density", "hessian_erank",
                   "hessian_near_zero_mass")
HESSIAN_CATEGORY = "Hessian spectrum"


def _final_and_peak(run, metric: str) -> tuple[dict[str, float], dict[str, float]]:
    """Per tapped layer, the last value of ``<metric>/activation/<layer>`` and its maximum."""
    final, peak = {}, {}
    for tap in run["taps"]:
        series = run["collapse"].get(f"{metric}/activation/{tap['name']}")
        if not series or series[-1] is None:
            raise ValueError(f"collapse has no {metric}/activation series for every tap")
        final[tap["name"]] = series[-1]
        peak[tap["name"]] = max(v for v in series if v is not None)
    return final, peak


def capacity_retention(run) -> float | None:
    final, peak = _final_and_peak(run, "erank")
    ratios = [final[k] / max(peak[k], final[k]) for k in final if max(peak[k], final[k]) > 0]
    return sum(ratios) / len(ratios) if ratios else None


def _measured_between_experiences(run) -> bool:
    """Whether an evaluator also measured every N iterations (those values are not in the file)."""
    options = run.get("resolved_options", {}).get("evaluator", {})
    return any(isinstance(o, dict) and o.get("every_n_iterations") for o in options.values())


def capacity_agrees(stored, expected, run) -> bool:
    if expected is None or not isinstance(stored, (int, float)):
        return False
    # A peak measured between experiences can only be higher, so the ratio only lower.
    if _measured_between_experiences(run):
        return stored <= expected + TOLERANCE
    return abs(stored - expected) <= TOLERANCE


def _final_mean(metric: str):
    def recompute(run) -> float:
        final, _ = _final_and_peak(run, metric)
        return sum(final.values()) / len(final)

    return recompute


def fresh_accuracy(run) -> list[float]:
    """The fresh models' accuracies: the recorded series where the submission stores it."""
    fresh = run["summary"].get("fresh_accuracy")
    if not isinstance(fresh, list) or len(fresh) != len(run["accuracy_matrix"]):
        raise ValueError("plasticity needs one fresh-model accuracy per experience (summary.fresh_accuracy)")
    return run["collapse"].get("fresh_accuracy/model/all", fresh)


def plasticity(run) -> list[float | None]:
    """R[j][j] / fresh accuracy on j; None where the fresh model scored 0."""
    matrix, fresh = run["accuracy_matrix"], fresh_accuracy(run)
    return [matrix[j][j] / fresh[j] if fresh[j] > 0 else None for j in range(len(matrix))]


def plasticity_mean(run) -> float:
    finite = [v for v in plasticity(run) if v is not None]
    if not finite:
        raise ValueError("plasticity is undefined on every experience")
    return sum(finite) / len(finite)


def plasticity_retention_relative(run) -> float | None:
    ratios = plasticity(run)
    if any(v is None for v in ratios):
        raise ValueError("plasticity is undefined on some experience (a fresh network scored 0 there)")
    return retention(ratios)


ACTIVATION_SUMMARIES = (
    Summary("capacity_retention", "per tapped layer, final activation erank over its peak, mean over layers",
            higher_is_better=True, bounds=(0.0, 1.0), recompute=capacity_retention, agrees=capacity_agrees),
    Summary("dead_units", "share of tapped units that never fire after the last experience",
            higher_is_better=False, bounds=(0.0, 1.0), recompute=_final_mean("dead_units")),
    Summary("dormant_units", "share of tapped units far below their layer's mean activity after the last experience",
            bounds=(0.0, 1.0)),  # not ranked, and not recomputed: boards never checked it, so old files lack its series
)
PLASTICITY_SUMMARIES = (
    Summary("fresh_accuracy", "accuracy of a fresh model trained on experience j alone (per experience)",
            recompute=fresh_accuracy),
    Summary("plasticity", "R[j][j] over the fresh model's accuracy on j (per experience)", recompute=plasticity),
    Summary("plasticity_mean", "mean of the finite plasticity values", higher_is_better=True, recompute=plasticity_mean, rank_name="plasticity"),
    Summary("plasticity_retention_relative", "late over early plasticity (R[j][j] over fresh accuracy)",
            higher_is_better=True, recompute=plasticity_retention_relative, nullable=True,
            label="plasticity retention (relative)"),
)


def metrics(names, kind: str, category: str | None = None) -> tuple[Metric, ...]:
    return tuple(Metric(name, (kind,), category) for name in names)


WEIGHTS = metrics(WEIGHT_METRICS, "weight")
ACTIVATIONS = metrics(ACTIVATION_METRICS, "activation")
ERANK = (Metric("erank", ("weight", "activation")),)
HESSIAN = tuple(Metric(name, ("model", "layer"), HESSIAN_CATEGORY) for name in HESSIAN_METRICS)
CKA = (Metric("cka", ("exp",), "representation similarity (CKA)"),)
PLASTICITY = (Metric("fresh_accuracy", ("model",)),)


def _hessian_density_over_tasks(runs):
    from .hessian_figures import density_over_tasks  # matplotlib only when drawn

    return density_over_tasks(runs)


HESSIAN_FIGURES = (
    FigureSpec(
        "hessian_density_over_tasks", "Hessian density at each new task, over tasks",
        "One row per strategy: at the initialization of each new task (x, the loss Hessian on its data before "
        "training on it), how the spectrum's weight spreads over the eigenvalues λ (y, log, the weight at |λ| below "
        "its lower end in its bottom row, negative outliers left out), mean over seeds, so that the sparse spectrum that precedes lost plasticity in He et al.'s account (its "
        "middle emptied into a spike near zero and a few large outliers) shows as colour draining from the middle.",
        _hessian_density_over_tasks,
    ),
)
