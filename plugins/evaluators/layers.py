"""Per-layer collapse measurements on the run's tapped layers and fixed probe set."""

from __future__ import annotations

from collapsebench.evaluation import CollapseMetric, Measurement
from collapsebench.metrics import erank, singular_values
from collapsebench.taps import taps_of


class ErankMetric(CollapseMetric):
    """Weight and activation effective rank of every tapped layer (Roy & Vetterli, SPEC.md)."""

    def __init__(self, context, every_n_iterations: int = 0, histograms: bool = True):
        super().__init__(context.recorder, every_n_iterations=every_n_iterations)
        self.context = context
        self.histograms = histograms

    def measure(self, strategy, phase):
        model = strategy.model
        taps = taps_of(model)
        activations = self.context.probe.activations(model, taps, device=strategy.device)
        for tap in taps:
            weights = tap.weight_matrix()
            yield Measurement(
                "erank", "weight", tap.name, float(erank(weights)),
                histogram=singular_values(weights) if self.histograms else None,
            )
            features = activations[tap.name]
            yield Measurement(
                "erank", "activation", tap.name, float(erank(features)),
                histogram=singular_values(features) if self.histograms else None,
            )
