"""Which layers forget: layer-wise linear CKA of each experience's representation over time (Ramasesh et al.)."""

from __future__ import annotations

import math

from collapsebench.evaluation import CollapseMetric, Measurement
from collapsebench.metrics.similarity import linear_cka
from collapsebench.taps import taps_of

from .common import probe_activations


class CkaMetric(CollapseMetric):
    """After training on experience j, each layer's activations on j's probe inputs become j's
    reference; at every later measurement, the same layer's activations on the same inputs are
    compared with it by linear CKA.

    Records: name ``cka``, kind ``exp<j>``, the layer, ``data = {"probe_experience": j}``. The
    kind carries j so that TensorBoard gets one curve per (experience, layer): ``cka/exp0/fc1``.
    """

    def __init__(self, context, every_n_iterations: int = 0):
        super().__init__(context.recorder, every_n_iterations=every_n_iterations)
        self.context = context
        #: probe experience j -> layer -> activations right after training on j
        self.references = {}
        #: the latest end-of-experience comparisons: probe experience j -> layer -> CKA
        self.latest_after_experience: tuple[int, dict[int, dict[str, float]]] | None = None

    def measure(self, strategy, phase):
        taps = taps_of(strategy.model)
        activations = probe_activations(self.context, strategy, phase, taps)
        current = strategy.experience.current_experience
        compared = {}
        for j, reference in sorted(self.references.items()):
            mask = self.context.probe.experience_mask(j)
            compared[j] = {}
            for tap in taps:
                value = linear_cka(reference[tap.name], activations[tap.name][mask])
                compared[j][tap.name] = value
                yield Measurement("cka", f"exp{j}", tap.name, value, data={"probe_experience": j})
        if phase == "end":
            self.latest_after_experience = (current, compared)
            mask = self.context.probe.experience_mask(current)
            if bool(mask.any()):
                self.references[current] = {tap.name: activations[tap.name][mask].clone() for tap in taps}

    def summarize(self, accuracy_matrix):
        """Per layer, after the last experience: CKA of the first experience's representation
        (``cka_first_after_last``) and the mean over all earlier experiences (``cka_after_last``)."""
        last = len(accuracy_matrix) - 1
        if self.latest_after_experience is None or self.latest_after_experience[0] != last:
            return {}
        compared = self.latest_after_experience[1]
        if not compared:
            return {}
        layers = list(next(iter(compared.values())))
        first = min(compared)
        return {
            "cka_after_last": {layer: _mean([compared[j][layer] for j in compared]) for layer in layers},
            "cka_first_after_last": {layer: compared[first][layer] for layer in layers},
        }


def _mean(values: list[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return sum(finite) / len(finite) if finite else math.nan
