"""L2, Shrink & Perturb and L2 Init as Avalanche training plugins.

Weight decay is added to the gradients after the backward pass: ∇ ← ∇ + λθ for every
trainable parameter (biases and heads included), which is exactly what the ``weight_decay``
argument of ``torch.optim.SGD``/``Adam`` does, i.e. the loss term (λ/2)‖θ‖². Doing it in a plugin
rather than in the optimizer lets it compose with any base strategy and leaves the run's
``--weight-decay`` untouched (the two add up if both are set).
"""

from __future__ import annotations

import torch
from avalanche.core import SupervisedPlugin

from collapsebench import CollapsebenchError


def _non_negative(strategy: str, option: str, value: float) -> float:
    if value < 0:
        raise CollapsebenchError(f"{strategy}: {option} must not be negative, got {value}.")
    return value


def trainable(model) -> list[torch.nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]


@torch.no_grad()
def add_weight_decay(model, weight_decay: float) -> None:
    """∇ ← ∇ + λθ on every parameter that has a gradient this step (as torch's optimizers do)."""
    if weight_decay == 0:
        return
    for parameter in trainable(model):
        if parameter.grad is not None:
            parameter.grad.add_(parameter, alpha=weight_decay)


class WeightDecay(SupervisedPlugin):
    """L2: weight decay λ on every trainable parameter, through the gradient."""

    def __init__(self, weight_decay: float):
        super().__init__()
        self.weight_decay = _non_negative("l2", "weight_decay", weight_decay)

    def after_backward(self, strategy, **kwargs):
        add_weight_decay(strategy.model, self.weight_decay)


class ShrinkPerturb(SupervisedPlugin):
    """Shrink & Perturb: weight decay λ through the gradient, then θ ← θ + σ·ε, ε ~ N(0, I),
    after every update.

    With plain SGD at learning rate η and no loss gradient, one step maps θ to
    (1 − ηλ)·θ + σ·ε: the shrink factor is 1 − ηλ, and E‖θ'‖² = (1 − ηλ)²‖θ‖² + σ²·n.
    """

    def __init__(self, weight_decay: float, noise_std: float):
        super().__init__()
        self.weight_decay = _non_negative("shrink_perturb", "weight_decay", weight_decay)
        self.noise_std = _non_negative("shrink_perturb", "noise_std", noise_std)

    def after_backward(self, strategy, **kwargs):
        add_weight_decay(strategy.model, self.weight_decay)

    @torch.no_grad()
    def after_update(self, strategy, **kwargs):
        if self.noise_std == 0:
            return
        for parameter in trainable(strategy.model):
            parameter.add_(torch.randn_like(parameter), alpha=self.noise_std)


class L2Init(SupervisedPlugin):
    """L2 Init (Kumar et al.): loss + λ‖θ − θ₀‖², θ₀ the weights at the first training step.

    θ₀ is recorded at the first ``before_training``, i.e. the freshly initialized model; a
    parameter that appears later (a new task's head) is anchored at its own initial value. The
    term is added to the loss before the backward pass, like Avalanche's EWC, so the logged
    training loss includes it. With no task gradient, one plain SGD step at learning rate η
    moves θ − θ₀ to (1 − 2ηλ)(θ − θ₀).
    """

    #: ``before_backward`` replaces the loss (``strategy.loss + penalty``), never in place.
    collapsebench_needs_empty_loss = False

    def __init__(self, coefficient: float):
        super().__init__()
        self.coefficient = _non_negative("l2_init", "coefficient", coefficient)
        self.initial: dict[str, torch.Tensor] = {}

    def before_training(self, strategy, **kwargs):
        self._anchor_new_parameters(strategy.model)

    def before_backward(self, strategy, **kwargs):
        if self.coefficient == 0:
            return
        self._anchor_new_parameters(strategy.model)
        penalty = sum(
            ((parameter - self.initial[name].to(parameter)) ** 2).sum()
            for name, parameter in strategy.model.named_parameters()
            if parameter.requires_grad
        )
        strategy.loss = strategy.loss + self.coefficient * penalty

    def _anchor_new_parameters(self, model) -> None:
        for name, parameter in model.named_parameters():
            if name not in self.initial:
                self.initial[name] = parameter.detach().clone()


def build_l2(context, weight_decay):
    from collapsebench import StrategyParts

    return StrategyParts(plugins=[WeightDecay(weight_decay)])


def build_shrink_perturb(context, weight_decay, noise_std):
    from collapsebench import StrategyParts

    return StrategyParts(plugins=[ShrinkPerturb(weight_decay, noise_std)])


def build_l2_init(context, coefficient):
    from collapsebench import StrategyParts

    return StrategyParts(plugins=[L2Init(coefficient)])
