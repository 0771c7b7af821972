"""Weight collapse: rank and magnitude of each tapped layer's weight matrix (SPEC, "Rank and capacity metrics")."""

from __future__ import annotations

from collapsebench import CollapseMetric, Measurement, taps_of
from collapsebench.metrics.ranks import (
    spectrum_approx_rank,
    spectrum_erank,
    spectrum_srank,
    spectrum_stable_rank,
    weight_magnitude,
)

from .common import RecordedPeaks, single_threaded, singular_values

WEIGHT_METRICS = ("erank", "erank_peak_normalized", "stable_rank", "srank", "approx_rank", "weight_magnitude")


class WeightMetric(CollapseMetric):
    """Per tapped layer, kind ``weight``: one SVD of the ``out x rest`` weight matrix feeds every rank metric.

    ``names`` picks a subset of :data:`WEIGHT_METRICS` (the ``erank`` evaluator takes just erank).
    With ``histograms`` the singular values go to TensorBoard as a histogram on the erank tag.
    """

    def __init__(self, context, every_n_iterations: int = 0, histograms: bool = True, names=WEIGHT_METRICS):
        super().__init__(context.recorder, every_n_iterations=every_n_iterations)
        self.histograms = histograms
        self.names = tuple(names)
        self.peaks = RecordedPeaks(context.recorder, "erank", "weight")

    def measure(self, strategy, phase):
        with single_threaded():
            for tap in taps_of(strategy.model):
                weights = tap.weight_matrix()
                sigma = singular_values(weights)
                rank = float(spectrum_erank(sigma))
                values = {
                    "erank": rank,
                    "erank_peak_normalized": self.peaks.normalize(tap.name, rank),
                    "stable_rank": spectrum_stable_rank(sigma),
                    "srank": spectrum_srank(sigma),
                    "approx_rank": spectrum_approx_rank(sigma),
                    "weight_magnitude": weight_magnitude(weights),
                }
                for name in self.names:
                    histogram = sigma.cpu() if self.histograms and name == "erank" else None
                    yield Measurement(name, "weight", tap.name, values[name], histogram=histogram)
