"""The statistics a claim can test, and the verdict.

Every statistic takes the study's runs (:class:`collapsebench.report.runs.Run`) and the claim's
``params`` and returns a :class:`Measured`: an estimate, its 95% interval and how the interval
was made. Two kinds of interval are used, each where it fits the data:

- a comparison of strategies over seeds is a mean of per-cell values (paired by stream, model
  and seed), with the one seed statistic of collapsebench (:func:`collapsebench.stats.interval`);
- a pooled rank correlation over many (run, experience) points gets a percentile bootstrap over
  *runs* (points of one run are not independent, so whole runs are resampled), seeded so that a
  report is reproducible.

Series are read per run: ``new_task_accuracy`` and ``online_accuracy`` (per task), a summary key
holding a per-task list, or ``NAME@KIND`` / ``NAME@KIND:PHASE`` for metric records (the mean
over the layers recorded, phase ``end`` unless given).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

BOOTSTRAP_RESAMPLES = 1000


@dataclass(frozen=True)
class Measured:
    estimate: float
    low: float | None
    high: float | None
    method: str
    n: int
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Verdict:
    claim: Any
    measured: Measured
    passed: bool
    reason: str

    def to_dict(self) -> dict[str, Any]:
        c, m = self.claim, self.measured
        return {"claim": c.name, "text": c.text, "statistic": c.statistic, "params": c.params,
                "direction": c.direction, "threshold": c.threshold, "require": c.require,
                "estimate": _finite(m.estimate), "low": _finite(m.low), "high": _finite(m.high),
                "interval_method": m.method, "n": m.n, "detail": m.detail,
                "verdict": "PASS" if self.passed else "FAIL", "reason": self.reason}


def _finite(value):
    return value if isinstance(value, (int, float)) and math.isfinite(value) else None


# --- reading runs ---------------------------------------------------------------------------


def _options_key(run, leave_out: str | None = None) -> str:
    """The run's stream and model options as one comparable text (a grid axis sets them)."""
    import json

    options = {kind: {k: v for k, v in (run.config.get(f"{kind}_options") or {}).items() if k != leave_out}
               for kind in ("stream", "model")}
    return json.dumps(options, sort_keys=True, default=str)


def _cell(run) -> tuple:
    """What pairs runs of two strategies: stream, model, seed, and the options a grid axis varied."""
    return (run.config.get("stream"), run.config.get("model"), run.seed, _options_key(run))


def option_value(run, option: str):
    """The value of a stream option (else a model option) in ``run``'s config; None if unset."""
    for kind in ("stream", "model"):
        options = run.config.get(f"{kind}_options") or {}
        if option in options:
            return options[option]
    return None


def _of(runs, strategy: str | None):
    return [r for r in runs if strategy is None or r.strategy == strategy]


def series(run, metric: str) -> dict[int, float]:
    """experience -> value of ``metric`` in ``run`` (see the module docstring)."""
    from collapsebench.report.runs import _series, new_task_accuracy, online_accuracy

    if metric == "new_task_accuracy":
        return new_task_accuracy(run)
    if metric == "online_accuracy":
        return online_accuracy(run)
    if "@" in metric:
        name, _, rest = metric.partition("@")
        kind, _, phase = rest.partition(":")
        phase = phase or "end"
        per_layer = [run.by_experience(name, kind, layer, phase) for layer in run.layers(name, kind, phase)]
        experiences = sorted({e for values in per_layer for e in values})
        out = {}
        for e in experiences:
            values = [v[e] for v in per_layer if e in v and math.isfinite(v[e])]
            if values:
                out[e] = sum(values) / len(values)
        return out
    return _series(run.summary.get(metric))


def _ends(values: Sequence[float], share: float = 0.1) -> tuple[float, float]:
    k = max(1, round(len(values) * share))
    return sum(values[:k]) / k, sum(values[-k:]) / k


def scalar(run, metric: str, transform: str = "value") -> float:
    """One number per run: a summary value (a list counts as its mean), or of a series its
    ``retention`` (mean of the last 10% over the first 10%) or ``change`` (last minus first)."""
    if transform == "value":
        value = run.summary.get(metric)
        if isinstance(value, list):
            value = [v for v in value if isinstance(v, (int, float))]
            return sum(value) / len(value) if value else math.nan
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        values = series(run, metric)
        return sum(values.values()) / len(values) if values else math.nan
    values = [v for _, v in sorted(series(run, metric).items())]
    if len(values) < 2:
        return math.nan
    first, last = _ends(values)
    if transform == "retention":
        return last / first if first else math.nan
    if transform == "change":
        return last - first
    raise ValueError(f"unknown transform {transform!r}")


# --- interval helpers ----------------------------------------------------------------------


def _t(values: list[float], detail: dict) -> Measured:
    from collapsebench.stats import METHOD, interval

    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return Measured(math.nan, None, None, METHOD, 0, detail)
    value = interval(finite)
    return Measured(value.mean, value.low, value.high, f"{METHOD} over {len(finite)} runs or cells", len(finite), detail)


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    from collapsebench.metrics.analysis import spearman as _spearman

    return _spearman(x, y)[0]


def pooled_spearman(points_per_run: list[list[tuple[float, float]]], seed: int) -> Measured:
    """Spearman's rho over the points of all runs, with a percentile bootstrap over runs."""
    import numpy as np

    runs = [p for p in points_per_run if p]
    pooled = [pt for p in runs for pt in p]
    detail = {"points": len(pooled), "runs": len(runs)}
    if len(pooled) < 3:
        return Measured(math.nan, None, None, "bootstrap over runs", len(runs), detail)
    estimate = spearman([a for a, _ in pooled], [b for _, b in pooled])
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(BOOTSTRAP_RESAMPLES):
        sample = [pt for k in rng.integers(0, len(runs), len(runs)) for pt in runs[k]]
        rho = spearman([a for a, _ in sample], [b for _, b in sample])
        if math.isfinite(rho):
            draws.append(rho)
    low, high = (float(np.percentile(draws, 2.5)), float(np.percentile(draws, 97.5))) if len(runs) > 1 and draws else (None, None)
    return Measured(estimate, low, high, f"percentile bootstrap over {len(runs)} runs ({BOOTSTRAP_RESAMPLES} "
                    f"resamples, seed {seed})", len(runs), detail)


# --- the statistics ------------------------------------------------------------------------


def forgetting_erank_spearman(runs, params) -> Measured:
    """Pooled Spearman between each experience's forgetting and the activation-erank drop that
    followed it (Zhu & Jin's pairing, :func:`collapsebench.report.runs.forgetting_and_erank_drop`)."""
    from collapsebench.report.runs import forgetting_and_erank_drop

    points = []
    for run in _of(runs, params.get("strategy")):
        _, drops, forgotten = forgetting_and_erank_drop(run)
        points.append([(d, f) for d, f in zip(drops, forgotten) if math.isfinite(d) and math.isfinite(f)])
    return pooled_spearman(points, int(params.get("bootstrap_seed", 0)))


def mean(runs, params) -> Measured:
    """The mean over one strategy's runs of a per-run scalar (:func:`scalar`)."""
    values = [scalar(r, params["metric"], params.get("transform", "value")) for r in _of(runs, params.get("strategy"))]
    return _t(values, {"values": [_finite(v) for v in values]})


def difference(runs, params) -> Measured:
    """Strategy ``a`` minus strategy ``b`` of a per-run scalar, paired by (stream, model, seed)."""
    metric, transform = params["metric"], params.get("transform", "value")
    b = {_cell(r): scalar(r, metric, transform) for r in _of(runs, params["b"])}
    diffs = [scalar(r, metric, transform) - b[_cell(r)] for r in _of(runs, params["a"]) if _cell(r) in b]
    return _t(diffs, {"pairs": len(diffs)})


def _next_task_cka(run) -> dict[str, float]:
    """layer -> mean CKA between experience j's representation right after j and after j+1."""
    from collapsebench.report.runs import cka_records

    per_layer: dict[str, list[float]] = {}
    for layer, probe, later, value in cka_records(run):
        if later == probe + 1:
            per_layer.setdefault(layer, []).append(value)
    order = [t for t in run.tap_widths if t in per_layer] + [t for t in per_layer if t not in run.tap_widths]
    return {layer: sum(per_layer[layer]) / len(per_layer[layer]) for layer in order}


def cka_depth_spearman(runs, params) -> Measured:
    """Pooled Spearman between a layer's depth (its tap index) and its next-task CKA."""
    points = []
    for run in _of(runs, params.get("strategy")):
        by_layer = _next_task_cka(run)
        points.append([(float(depth), value) for depth, value in enumerate(by_layer.values())])
    return pooled_spearman(points, int(params.get("bootstrap_seed", 0)))


def cka_deep_gain(runs, params) -> Measured:
    """How much more strategy ``a`` raises the deepest layer's next-task CKA over strategy ``b``
    than the shallowest layer's: (deep_a - deep_b) - (shallow_a - shallow_b), paired per cell."""

    def ends(run):
        values = list(_next_task_cka(run).values())
        return (values[0], values[-1]) if len(values) >= 2 else (math.nan, math.nan)

    b = {_cell(r): ends(r) for r in _of(runs, params["b"])}
    gains = []
    for run in _of(runs, params["a"]):
        if _cell(run) in b:
            (sa, da), (sb, db) = ends(run), b[_cell(run)]
            gains.append((da - db) - (sa - sb))
    return _t(gains, {"pairs": len(gains)})


def _onset(values: list[float], fraction: float, baseline: int) -> int:
    """First index whose value is below ``fraction`` of the mean of the first ``baseline``; the
    series length when it never falls (censored: the fall, if any, comes later)."""
    base = sum(values[:baseline]) / baseline
    for k, v in enumerate(values):
        if k >= baseline and v < fraction * base:
            return k
    return len(values)


def onset_lead(runs, params) -> Measured:
    """Per run, the task index at which ``accuracy`` first falls below ``fraction`` of its start
    minus the index at which ``collapse`` does: positive when the collapse comes first."""
    fraction, baseline = float(params.get("fraction", 0.8)), int(params.get("baseline", 1))
    leads, onsets = [], []
    for run in _of(runs, params.get("strategy")):
        acc = [v for _, v in sorted(series(run, params.get("accuracy", "new_task_accuracy")).items())]
        col = [v for _, v in sorted(series(run, params["collapse"]).items())]
        if len(acc) <= baseline or len(col) <= baseline:
            continue
        a, c = _onset(acc, fraction, baseline), _onset(col, fraction, baseline)
        onsets.append({"accuracy_onset": a, "collapse_onset": c})
        leads.append(float(a - c))
    return _t(leads, {"onsets": onsets})


def interior_peak(runs, params) -> Measured:
    """How far a per-run value at an interior value of a grid axis exceeds it at both ends.

    Runs are grouped by everything but the axis (stream, model, strategy, seed, other options);
    per group, ``metric`` at ``option = at`` minus the larger of its values at the smallest and
    the largest ``option`` value; the groups of one (stream, model, strategy, seed) are averaged,
    and the t-interval is over those. Positive when the middle of the axis beats both extremes
    (Ramasesh's forgetting at intermediate task similarity).
    """
    option, at = params["option"], float(params["at"])
    metric, transform = params.get("metric", "forgetting"), params.get("transform", "value")
    groups: dict[tuple, dict[float, float]] = {}
    for run in _of(runs, params.get("strategy")):
        value = option_value(run, option)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            key = (run.config.get("stream"), run.config.get("model"), run.strategy, run.seed,
                   _options_key(run, leave_out=option))
            groups.setdefault(key, {})[float(value)] = scalar(run, metric, transform)
    per_seed: dict[tuple, list[float]] = {}
    ends = None
    for key, by_value in groups.items():
        low, high = min(by_value), max(by_value)
        if at in by_value and low < at < high:
            per_seed.setdefault(key[:4], []).append(by_value[at] - max(by_value[low], by_value[high]))
            ends = (low, high)
    # The groups of one seed that differ only in another option share nothing random but the
    # seed; their ends may even be the same runs: one value per seed, their mean.
    excess = [sum(values) / len(values) for values in per_seed.values()]
    detail = {"seeds": len(excess), "groups": sum(len(v) for v in per_seed.values()), "at": at,
              "ends": list(ends) if ends else None}
    return _t(excess, detail)


STATISTICS: dict[str, Callable[[Sequence[Any], dict], Measured]] = {
    "forgetting_erank_spearman": forgetting_erank_spearman,
    "mean": mean,
    "difference": difference,
    "cka_depth_spearman": cka_depth_spearman,
    "cka_deep_gain": cka_deep_gain,
    "onset_lead": onset_lead,
    "interior_peak": interior_peak,
}


def evaluate(claim, runs) -> Verdict:
    try:
        measured = STATISTICS[claim.statistic](runs, claim.params)
    except KeyError as exc:
        measured = Measured(math.nan, None, None, "-", 0, {"error": f"missing parameter {exc}"})
    side = (lambda v: v > claim.threshold) if claim.direction == ">" else (lambda v: v < claim.threshold)
    wanted = f"{claim.direction} {claim.threshold:g}"
    if not math.isfinite(measured.estimate):
        return Verdict(claim, measured, False, "not measurable from these runs (no finite value)")
    if claim.require == "estimate" or measured.low is None:
        passed = side(measured.estimate)
        how = "estimate" + (" (no interval: too few runs)" if measured.low is None and claim.require == "interval" else "")
        if measured.low is None and claim.require == "interval":
            return Verdict(claim, measured, False, f"no interval from {measured.n} value(s); the claim needs one")
        return Verdict(claim, measured, passed, f"{how} {measured.estimate:.3f} {'is' if passed else 'is not'} {wanted}")
    bound = measured.low if claim.direction == ">" else measured.high
    passed = side(bound)
    return Verdict(claim, measured, passed,
                   f"the whole interval [{measured.low:.3f}, {measured.high:.3f}] {'is' if passed else 'is not'} {wanted}")
