"""ReDo, recycling dormant neurons (Sokar et al., ICML 2023), as an Avalanche training plugin.

Every K training steps the τ-dormant units of each tapped layer with replaceable units (the
rule of :mod:`.units`) are re-initialized: fresh incoming weights from the layer's initial
distribution and bias 0, outgoing weights 0, optimizer state 0. Dormancy is SPEC.md's
``dormant_units`` score, s_i = E|h_i| / ((1/H) Σ_k E|h_k|), measured on that step's training
mini-batch (before its update), with s_i ≤ τ dormant. A layer whose units are all silent has
no scale to compare against: all of its units count as dormant.
"""

from __future__ import annotations

import warnings

import torch
from avalanche.core import SupervisedPlugin

from collapsebench.errors import CollapsebenchError

from .units import OutputCapture, replaceable_units, unit_mean


def dormant(output: torch.Tensor, threshold: float) -> torch.Tensor:
    """Indices of the τ-dormant units of a layer output (batch first)."""
    magnitude = unit_mean(output.abs())
    scale = magnitude.mean()
    if scale == 0:
        return torch.arange(magnitude.numel(), device=magnitude.device)
    return torch.nonzero(magnitude / scale <= threshold).flatten()


class ReDo(SupervisedPlugin):
    def __init__(self, model, every_n_steps: int, threshold: float):
        super().__init__()
        if every_n_steps < 1:
            raise CollapsebenchError(f"redo: every_n_steps must be at least 1, got {every_n_steps}.")
        if threshold < 0:
            raise CollapsebenchError(f"redo: threshold must not be negative, got {threshold}.")
        self.every_n_steps = every_n_steps
        self.threshold = threshold
        self.layers, self.skipped = replaceable_units(model)
        if not self.layers:
            reasons = "; ".join(f"{name}: {why}" for name, why in self.skipped.items())
            raise CollapsebenchError(f"redo: no tapped layer of {type(model).__name__} has replaceable units ({reasons}).")
        if self.skipped:
            warnings.warn(
                "redo leaves these tapped layers alone: "
                + "; ".join(f"{name} ({why})" for name, why in self.skipped.items()),
                stacklevel=2,
            )
        self.capture = OutputCapture([layer.tap for layer in self.layers])
        self.steps = 0
        #: Units recycled so far, per layer, and the indices recycled at the last recycling step.
        self.recycled_total = {layer.name: 0 for layer in self.layers}
        self.last_recycled = {layer.name: torch.empty(0, dtype=torch.long) for layer in self.layers}

    def _recycling_step(self) -> bool:
        return (self.steps + 1) % self.every_n_steps == 0

    def before_forward(self, strategy, **kwargs):
        if self._recycling_step():
            self.capture.start()

    def after_forward(self, strategy, **kwargs):
        self.capture.stop()

    def after_update(self, strategy, **kwargs):
        if self._recycling_step():
            outputs, self.capture.outputs = self.capture.outputs, {}
            self.recycle(outputs, strategy.optimizer)
        self.steps += 1

    @torch.no_grad()
    def recycle(self, outputs: dict[str, torch.Tensor], optimizer) -> None:
        """Re-initialize the dormant units of every layer whose output is in ``outputs``."""
        # Output side first: a layer's fresh incoming rows must not overwrite the zero
        # outgoing weights of the previous layer's recycled units.
        for layer in reversed(self.layers):
            if layer.name not in outputs:
                continue
            units = dormant(outputs[layer.name], self.threshold)
            layer.reinitialize(units, optimizer)
            self.recycled_total[layer.name] += units.numel()
            self.last_recycled[layer.name] = units.cpu()


def build(context, every_n_steps, threshold):
    from collapsebench import StrategyParts

    return StrategyParts(plugins=[ReDo(context.model, every_n_steps, threshold)])
