"""ReDo, recycling dormant neurons (Sokar et al., ICML 2023), as an Avalanche training plugin.

Every K training steps the τ-dormant units of each tapped layer with replaceable units (the
rule of :mod:`.units`) are re-initialized: fresh incoming weights from the layer's initial
distribution and bias 0, outgoing weights 0, optimizer state 0. Dormancy is SPEC.md's
``dormant_units`` score, s_i = E|h_i| / ((1/H) Σ_k E|h_k|), with s_i ≤ τ dormant; E is the mean
over the training inputs of the last ``score_batches`` mini-batches up to and including the
recycling step's (measured in their forward passes, before their updates). One batch, the
default, is Sokar et al.'s choice; with small mini-batches a unit that merely did not fire on
those few inputs scores 0, and more batches make the estimate less noisy. A layer whose units
are all silent has no scale to compare against: all of its units count as dormant.
"""

from __future__ import annotations

import warnings

import torch
from avalanche.core import SupervisedPlugin

from collapsebench import CollapsebenchError

from .units import OutputCapture, replaceable_units, unit_mean


def dormant(magnitude: torch.Tensor, threshold: float) -> torch.Tensor:
    """Indices of the τ-dormant units, given each unit's mean absolute activation E|h_i|."""
    scale = magnitude.mean()
    if scale == 0:
        return torch.arange(magnitude.numel(), device=magnitude.device)
    return torch.nonzero(magnitude / scale <= threshold).flatten()


class ReDo(SupervisedPlugin):
    #: Its forward callbacks only capture activations, never touching ``strategy.loss``.
    collapsebench_needs_empty_loss = False

    def __init__(self, model, every_n_steps: int, threshold: float, score_batches: int = 1):
        super().__init__()
        if every_n_steps < 1:
            raise CollapsebenchError(f"redo: every_n_steps must be at least 1, got {every_n_steps}.")
        if not 1 <= score_batches <= every_n_steps:
            raise CollapsebenchError(
                f"redo: score_batches must be between 1 and every_n_steps ({every_n_steps}), got {score_batches}."
            )
        if threshold < 0:
            raise CollapsebenchError(f"redo: threshold must not be negative, got {threshold}.")
        self.every_n_steps = every_n_steps
        self.threshold = threshold
        self.score_batches = score_batches
        self.layers, self.skipped = replaceable_units(model)
        if not self.layers:
            reasons = "; ".join(f"{name}: {why}" for name, why in self.skipped.items())
            raise CollapsebenchError(
                f"redo: no tapped layer of {type(model).__name__} has replaceable units ({reasons})."
            )
        if self.skipped:
            warnings.warn(
                "redo leaves these tapped layers alone: "
                + "; ".join(f"{name} ({why})" for name, why in self.skipped.items()),
                stacklevel=2,
            )
        self.capture = OutputCapture([layer.tap for layer in self.layers])
        self.steps = 0
        #: per layer: Σ over scored inputs of |h_i|, and how many inputs
        self._magnitudes: dict[str, tuple[torch.Tensor, int]] = {}
        #: Units recycled so far, per layer, and the indices recycled at the last recycling step.
        self.recycled_total = {layer.name: 0 for layer in self.layers}
        self.last_recycled = {layer.name: torch.empty(0, dtype=torch.long) for layer in self.layers}

    def _steps_to_recycling(self) -> int:
        return self.every_n_steps - 1 - self.steps % self.every_n_steps

    def before_forward(self, strategy, **kwargs):
        if self._steps_to_recycling() < self.score_batches:
            self.capture.start()

    def after_forward(self, strategy, **kwargs):
        self.capture.stop()

    def after_update(self, strategy, **kwargs):
        outputs, self.capture.outputs = self.capture.outputs, {}
        for name, output in outputs.items():
            total, count = self._magnitudes.get(name, (0.0, 0))
            self._magnitudes[name] = (total + unit_mean(output.abs()) * output.shape[0], count + output.shape[0])
        if self._steps_to_recycling() == 0:
            magnitudes = {name: total / count for name, (total, count) in self._magnitudes.items()}
            self._magnitudes = {}
            self.recycle(magnitudes, strategy.optimizer)
        self.steps += 1

    @torch.no_grad()
    def recycle(self, magnitudes: dict[str, torch.Tensor], optimizer) -> None:
        """Re-initialize the dormant units of every layer, given its units' E|h_i|."""
        # Output side first: a layer's fresh incoming rows must not overwrite the zero
        # outgoing weights of the previous layer's recycled units.
        for layer in reversed(self.layers):
            if layer.name not in magnitudes:
                continue
            units = dormant(magnitudes[layer.name], self.threshold)
            layer.reinitialize(units, optimizer)
            self.recycled_total[layer.name] += units.numel()
            self.last_recycled[layer.name] = units.cpu()


def build(context, every_n_steps, threshold, score_batches):
    from collapsebench import StrategyParts

    return StrategyParts(plugins=[ReDo(context.model, every_n_steps, threshold, score_batches)])
