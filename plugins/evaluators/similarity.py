"""Which layers forget: layer-wise linear CKA of each experience's representation over time (Ramasesh et al.)."""

from __future__ import annotations

import math
import warnings

import torch

from collapsebench import CollapseMetric, Measurement, taps_of
from collapsebench.metrics.similarity import linear_cka

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
        self.references: dict[int, dict[str, torch.Tensor]] = {}
        self._checked_for_lost_references = False

    def measure(self, strategy, phase):
        self._warn_if_references_were_lost(strategy.experience.current_experience)
        taps = taps_of(strategy.model)
        activations = probe_activations(self.context, strategy, phase, taps)
        for j, reference in sorted(self.references.items()):
            mask = self.context.probe.experience_mask(j)
            for tap in taps:
                value = linear_cka(reference[tap.name], activations[tap.name][mask])
                yield Measurement("cka", f"exp{j}", tap.name, value, data={"probe_experience": j})
        if phase == "end":
            current = strategy.experience.current_experience
            mask = self.context.probe.experience_mask(current)
            if bool(mask.any()):
                self.references[current] = {tap.name: activations[tap.name][mask].clone() for tap in taps}

    def _warn_if_references_were_lost(self, current: int) -> None:
        """A run resumed without this metric's state has records of experiences it holds no reference for.

        Checked at the first measurement only: that is when a resumed run's metric first sees the records.
        """
        if self._checked_for_lost_references:
            return
        self._checked_for_lost_references = True
        trained = {r["experience"] for r in self.recorder.records if r["phase"] == "end" and r["experience"] < current}
        lost = sorted(j for j in trained if j not in self.references and bool(self.context.probe.experience_mask(j).any()))
        if lost:
            warnings.warn(f"CKA references of experiences {lost} are gone (a resumed run that did not restore "
                          "the cka evaluator's state_dict): those experiences are not compared any more.", stacklevel=2)

    def state_dict(self) -> dict:
        """The references, which a resumed run cannot measure again (the models they came from are gone)."""
        return {"references": self.references}

    def load_state_dict(self, state: dict) -> None:
        self.references = state["references"]

    def summarize(self, accuracy_matrix):
        """From the records taken after the last experience, per layer: the mean CKA over every
        earlier experience's probe inputs (``cka_after_last``) and that of the first experience
        (``cka_first_after_last``). 1 means the layer represents old inputs as it did when they
        were learned; Ramasesh et al. find it falls most in the deepest layers."""
        last = len(accuracy_matrix) - 1
        by_experience: dict[int, dict[str, float]] = {}
        for record in self.recorder.records:
            if (record["name"], record["phase"], record["experience"]) == ("cka", "end", last):
                by_experience.setdefault(record["data"]["probe_experience"], {})[record["layer"]] = record["value"]
        if not by_experience:
            return {}
        layers = list(by_experience[min(by_experience)])
        return {
            "cka_after_last": {layer: _mean([values[layer] for values in by_experience.values()]) for layer in layers},
            "cka_first_after_last": dict(by_experience[min(by_experience)]),
        }


def _mean(values: list[float]) -> float:
    """Mean of the finite values (a constant representation has CKA nan)."""
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return sum(finite) / len(finite) if finite else math.nan
