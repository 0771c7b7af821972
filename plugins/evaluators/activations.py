"""Activation collapse on the probe set, and the run-level analyses built on it (Zhu & Jin)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from collapsebench import CollapseMetric, Measurement, taps_of
from collapsebench.metrics.accuracy import MissingCells, forgetting_per_experience
from collapsebench.metrics.analysis import capacity_retention, correlate
from collapsebench.metrics.ranks import (
    dead_units,
    dormant_units,
    feature_norm,
    spectrum_erank,
    spectrum_feature_rank,
    spectrum_srank,
)

from .common import RecordedPeaks, end_of_experience_values, probe_activations, single_threaded, singular_values

ACTIVATION_METRICS = (
    "erank", "erank_peak_normalized", "srank", "feature_rank", "dead_units", "dormant_units", "feature_norm",
)


class ActivationMetric(CollapseMetric):
    """Per tapped layer, kind ``activation``, on the whole probe set: one SVD per layer and moment.

    ``names`` picks a subset of :data:`ACTIVATION_METRICS`; ``summaries`` adds the run-level
    values of :meth:`summarize` (they need erank, peak-normalized erank, dead and dormant units).
    """

    def __init__(self, context, every_n_iterations: int = 0, histograms: bool = True,
                 names=ACTIVATION_METRICS, summaries: bool = True):
        super().__init__(context.recorder, every_n_iterations=every_n_iterations)
        self.context = context
        self.histograms = histograms
        self.names = tuple(names)
        self.summaries = summaries
        self.peaks = RecordedPeaks(context.recorder, "erank", "activation")

    def measure(self, strategy, phase):
        taps = taps_of(strategy.model)
        activations = probe_activations(self.context, strategy, phase, taps)
        with single_threaded():
            for tap in taps:
                features = activations[tap.name]
                sigma = singular_values(features)
                rank = float(spectrum_erank(sigma))
                values = {
                    "erank": rank,
                    "erank_peak_normalized": self.peaks.normalize(tap.name, rank),
                    "srank": spectrum_srank(sigma),
                    "feature_rank": spectrum_feature_rank(sigma, features.shape[0]),
                    "dead_units": dead_units(features),
                    "dormant_units": dormant_units(features),
                    "feature_norm": feature_norm(features),
                }
                for name in self.names:
                    histogram = sigma.cpu() if self.histograms and name == "erank" else None
                    yield Measurement(name, "activation", tap.name, values[name], histogram=histogram)

    def summarize(self, accuracy_matrix):
        """Run-level values, all computed from the recorded activation metrics (so from results.json too).

        - ``capacity_retention``: SPEC, via :func:`collapsebench.metrics.analysis.capacity_retention`:
          each layer's erank after the last experience over its peak over every measurement.
        - ``dead_units``, ``dormant_units``: after the last experience, mean over tapped layers.
        - ``forgetting_erank_correlation``: see :func:`forgetting_erank_correlation`.
        """
        last = len(accuracy_matrix) - 1
        after = end_of_experience_values(self.recorder, "activation")
        if not self.summaries or last not in after:
            return {}
        final = after[last]
        summary = {
            "capacity_retention": capacity_retention(
                {layer: v["erank"] for layer, v in final.items()}, {layer: self.peaks.peak(layer) for layer in final}
            ),
            "dead_units": _mean(v["dead_units"] for v in final.values()),
            "dormant_units": _mean(v["dormant_units"] for v in final.values()),
        }
        self.summary_unavailable = {}
        try:
            summary["forgetting_erank_correlation"] = forgetting_erank_correlation(
                accuracy_matrix,
                {j: {layer: v["erank_peak_normalized"] for layer, v in layers.items()} for j, layers in after.items()},
            )
        except MissingCells as exc:
            # Forgetting needs the full matrix; other protocols do not measure it.
            self.summary_unavailable["forgetting_erank_correlation"] = f"needs forgetting per experience: {exc}"
        return summary

    #: what the run's summary_sources says each value comes from
    summary_sources = {
        "capacity_retention": "activation erank records: per tapped layer, erank after the last experience / "
                              "its peak over every measurement, averaged over layers",
        "dead_units": "activation dead_units records after the last experience, mean over tapped layers",
        "dormant_units": "activation dormant_units records after the last experience, mean over tapped layers",
        "forgetting_erank_correlation": "forgetting per experience (accuracy_matrix) against the drop of "
                                        "peak-normalized activation erank (records)",
    }


def erank_drops(normalized_after: Mapping[int, Mapping[str, float]], last: int) -> list[float]:
    """For each experience j < ``last``: the mean over layers of peak-normalized activation erank
    after training on j minus after training on ``last``.

    Positive when the representation has lost rank since j was learned; nan where a value is missing.
    """
    final = normalized_after.get(last, {})
    drops = []
    for j in range(last):
        then = normalized_after.get(j, {})
        layers = [layer for layer in final if layer in then]
        drops.append(_mean(then[layer] - final[layer] for layer in layers) if layers else math.nan)
    return drops


def forgetting_erank_correlation(
    accuracy_matrix: Sequence[Sequence[float]], normalized_after: Mapping[int, Mapping[str, float]]
) -> dict[str, float | int]:
    """Pearson and Spearman correlation, over experiences j < T-1, of forgetting_j with the erank drop_j
    of :func:`erank_drops`: Zhu & Jin's finding is that they rise together (positive correlation)."""
    last = len(accuracy_matrix) - 1
    correlation = correlate(forgetting_per_experience(accuracy_matrix), erank_drops(normalized_after, last))
    return {"pearson": correlation.r_pearson, "spearman": correlation.r_spearman, "n": correlation.n}


def _mean(values) -> float:
    values = list(values)
    return sum(values) / len(values) if values else math.nan
