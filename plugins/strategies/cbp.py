"""Continual backprop (Dohare et al., Nature 2024) as an Avalanche training plugin.

Generate-and-test on every tapped layer whose units can be replaced (see :mod:`.units` for
the rule): after each update, every unit ages by one step and its contribution utility and
mean activation are updated as running averages; a fraction ρ of the mature units, those of
lowest bias-corrected utility, are then replaced by fresh ones. The definitions are those of
SPEC.md (Strategies, continual backprop).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
from avalanche.core import SupervisedPlugin

from collapsebench import CollapsebenchError

from .units import OutputCapture, Units, replaceable_units, unit_mean


@dataclass
class UnitStatistics:
    """Per-unit running statistics of one layer."""

    age: torch.Tensor
    utility: torch.Tensor
    mean_activation: torch.Tensor
    #: Replacements owed but not yet made: the fractional part carried between steps.
    due: float = 0.0

    @classmethod
    def zeros(cls, width: int, device) -> UnitStatistics:
        return cls(
            age=torch.zeros(width, dtype=torch.long, device=device),
            utility=torch.zeros(width, device=device),
            mean_activation=torch.zeros(width, device=device),
        )


class ContinualBackprop(SupervisedPlugin):
    """Replace a small fraction of mature, low-utility units with fresh ones after every update.

    Per unit i of a layer, each step: age_i += 1; f_i ← η f_i + (1 − η) mean|batch h_i;
    u_i ← η u_i + (1 − η) y_i with the contribution y_i = mean|batch |h_i| · Σ_k |w_out[k, i]|.
    Units with age > m are eligible; ρ · (number eligible) is added to the layer's due count
    and its whole part is replaced, those with the lowest û_i = u_i / (1 − η^age_i). A
    replaced unit gets fresh incoming weights from the layer's initial distribution, bias 0,
    outgoing weights 0 and zero optimizer state; the next layer's bias absorbs its mean
    contribution, w_out[:, i] · f̂_i with f̂_i = f_i / (1 − η^age_i), so the network's output
    changes only by the unit's deviation from its mean; age, utility and mean restart at 0.
    A unit of the next layer replaced in the same step keeps bias 0: it gets no share of
    that correction.
    """

    #: Its forward callbacks only capture activations, never touching ``strategy.loss``.
    collapsebench_needs_empty_loss = False

    def __init__(self, model, replacement_rate: float, maturity_threshold: int, decay_rate: float):
        super().__init__()
        if not 0.0 <= replacement_rate <= 1.0:
            raise CollapsebenchError(f"cbp: replacement_rate must be between 0 and 1, got {replacement_rate}.")
        if maturity_threshold < 0:
            raise CollapsebenchError(f"cbp: maturity_threshold must not be negative, got {maturity_threshold}.")
        if not 0.0 <= decay_rate < 1.0:
            raise CollapsebenchError(f"cbp: decay_rate must be in [0, 1), got {decay_rate}.")
        self.replacement_rate = replacement_rate
        self.maturity_threshold = maturity_threshold
        self.decay_rate = decay_rate
        self.layers, self.skipped = replaceable_units(model)
        if not self.layers:
            reasons = "; ".join(f"{name}: {why}" for name, why in self.skipped.items())
            raise CollapsebenchError(
                f"cbp: no tapped layer of {type(model).__name__} has replaceable units ({reasons})."
            )
        if self.skipped:
            warnings.warn(
                "cbp leaves these tapped layers alone: "
                + "; ".join(f"{name} ({why})" for name, why in self.skipped.items()),
                stacklevel=2,
            )
        device = self.layers[0].incoming.weight.device
        self.statistics = {layer.name: UnitStatistics.zeros(layer.width, device) for layer in self.layers}
        self.capture = OutputCapture([layer.tap for layer in self.layers])
        #: Units replaced so far, per layer, and the indices replaced at the last replacement.
        self.replaced_total = {layer.name: 0 for layer in self.layers}
        self.last_replaced = {layer.name: torch.empty(0, dtype=torch.long) for layer in self.layers}

    # --- Avalanche training plugin callbacks ------------------------------------------------

    def before_forward(self, strategy, **kwargs):
        self.capture.start()

    def after_forward(self, strategy, **kwargs):
        self.capture.stop()

    def after_update(self, strategy, **kwargs):
        outputs, self.capture.outputs = self.capture.outputs, {}
        for layer in self.layers:
            if layer.name in outputs:
                self.update_statistics(layer, outputs[layer.name])
        self.replace_due_units(strategy.optimizer)

    # --- the algorithm ----------------------------------------------------------------------

    @torch.no_grad()
    def update_statistics(self, layer: Units, output: torch.Tensor) -> None:
        stats = self._statistics_on(layer, output.device)
        eta = self.decay_rate
        stats.age += 1
        stats.mean_activation.mul_(eta).add_(unit_mean(output).float(), alpha=1 - eta)
        contribution = unit_mean(output.abs()).float() * layer.outgoing_magnitude().to(output.device)
        stats.utility.mul_(eta).add_(contribution, alpha=1 - eta)

    def bias_corrected(self, values: torch.Tensor, age: torch.Tensor) -> torch.Tensor:
        return values / (1 - self.decay_rate ** age.to(values.dtype))

    def due_units(self, layer: Units) -> torch.Tensor:
        """The units to replace now (and the due count updated); empty most steps."""
        stats = self.statistics[layer.name]
        eligible = torch.nonzero(stats.age > self.maturity_threshold).flatten()
        if eligible.numel() == 0:
            return eligible
        stats.due += self.replacement_rate * eligible.numel()
        count = min(int(stats.due), eligible.numel())
        if count == 0:
            return eligible[:0]
        stats.due -= count
        utility = self.bias_corrected(stats.utility[eligible], stats.age[eligible])
        return eligible[torch.topk(utility, count, largest=False).indices]

    def replace_due_units(self, optimizer) -> None:
        # Output side first: a layer's fresh incoming rows must not overwrite the zero
        # outgoing weights of the previous layer's fresh units.
        fresh: dict[int, torch.Tensor] = {}  # id(incoming module) -> its units replaced this step
        for layer in reversed(self.layers):
            units = self.due_units(layer)
            if units.numel():
                self.replace(layer, units, optimizer, fresh_readers=fresh.get(id(layer.outgoing)))
                fresh[id(layer.incoming)] = units

    @torch.no_grad()
    def replace(self, layer: Units, units: torch.Tensor, optimizer, fresh_readers: torch.Tensor | None = None) -> None:
        """Replace ``units`` of ``layer``.

        ``fresh_readers``: the units of the next layer replaced in this same step. Their
        biases stay 0 (a fresh unit starts with bias 0): the correction for ``units`` would
        otherwise reach them through their fresh incoming rows, which held no old weights.
        """
        stats = self.statistics[layer.name]
        bias = layer.outgoing.bias
        if bias is not None:
            mean = self.bias_corrected(stats.mean_activation[units], stats.age[units])
            correction = (layer.outgoing_sums()[:, units] @ mean.to(bias)).to(bias)
            if fresh_readers is not None:
                correction[fresh_readers.to(correction.device)] = 0.0
            bias += correction
        layer.reinitialize(units, optimizer)
        stats.age[units] = 0
        stats.utility[units] = 0.0
        stats.mean_activation[units] = 0.0
        self.replaced_total[layer.name] += units.numel()
        self.last_replaced[layer.name] = units.detach().cpu()

    def _statistics_on(self, layer: Units, device) -> UnitStatistics:
        stats = self.statistics[layer.name]
        if stats.age.device != torch.device(device):  # the model moved after the plugin was built
            stats = UnitStatistics(
                stats.age.to(device), stats.utility.to(device), stats.mean_activation.to(device), stats.due
            )
            self.statistics[layer.name] = stats
        return stats


def build(context, replacement_rate, maturity_threshold, decay_rate):
    from collapsebench import StrategyParts

    plugin = ContinualBackprop(context.model, replacement_rate, maturity_threshold, decay_rate)
    return StrategyParts(plugins=[plugin])
