"""ER+L2 (He, Guo, Prakash et al., 2025) as an Avalanche training plugin.

An effective-rank regularizer that keeps the tapped layers' feature erank high, plus L2
weight decay. The objective is R(θ) = mean over tapped layers of erank(H_l), H_l the layer's
``n x d`` activations on a batch (feature maps averaged over positions, as everywhere in
collapsebench), differentiated through ``torch.linalg.svdvals``
(:func:`collapsebench.metrics.erank`). Two ways to use it:

- ``mode = "ascent"`` (the public implementation, the default): after each ordinary update, a
  separate plain gradient-ascent step θ ← θ + α ∇R on a batch of the last ``batch_size``
  training inputs. It bypasses the optimizer, so momentum and Adam moments never see it.
- ``mode = "loss"``: R enters the training loss, loss − β·R, on the training mini-batch itself,
  and goes through the optimizer with the task gradient.

The erank of an ``n x d`` batch is at most min(n, d): the ascent batch of 100 lets it reach
100 on layers of 100 units or more; in loss mode the mini-batch size bounds it.
"""

from __future__ import annotations

import torch
from avalanche.core import SupervisedPlugin

from collapsebench import CollapsebenchError, activation_matrix, capture_activations, taps_of
from collapsebench.metrics import erank

from .regularizers import add_weight_decay, trainable
from .units import OutputCapture

MODES = ("ascent", "loss")


def mean_erank(outputs) -> torch.Tensor:
    """R = mean over layers of the erank of each layer's activation matrix (differentiable)."""
    values = [erank(activation_matrix(output)) for output in outputs]
    return torch.stack(values).mean()


class EffectiveRankL2(SupervisedPlugin):
    #: Its forward callbacks only capture activations; ``before_backward`` replaces the loss
    #: (``strategy.loss - beta * R``) rather than changing it in place.
    collapsebench_needs_empty_loss = False

    def __init__(self, model, mode: str, beta: float, step_size: float, batch_size: int, weight_decay: float):
        super().__init__()
        if mode not in MODES:
            raise CollapsebenchError(f"er_l2: mode must be one of {', '.join(MODES)}, got {mode!r}.")
        for option, value in (("beta", beta), ("step_size", step_size), ("weight_decay", weight_decay)):
            if value < 0:
                raise CollapsebenchError(f"er_l2: {option} must not be negative, got {value}.")
        if batch_size < 2:
            raise CollapsebenchError(f"er_l2: batch_size must be at least 2 (a rank needs two rows), got {batch_size}.")
        self.mode = mode
        self.beta = beta
        self.step_size = step_size
        self.batch_size = batch_size
        self.weight_decay = weight_decay
        self.taps = taps_of(model)
        self.capture = OutputCapture(self.taps, detach=False)
        self._recent_x: torch.Tensor | None = None
        self._recent_t: torch.Tensor | None = None
        #: R measured at the last regularization step, for inspection.
        self.last_objective: float | None = None

    # --- loss mode --------------------------------------------------------------------------

    def before_forward(self, strategy, **kwargs):
        if self.mode == "loss" and self.beta > 0:
            self.capture.start()

    def after_forward(self, strategy, **kwargs):
        self.capture.stop()

    def before_backward(self, strategy, **kwargs):
        if self.mode != "loss" or not self.capture.outputs:
            return
        objective = mean_erank(self.capture.outputs[t.name] for t in self.taps if t.name in self.capture.outputs)
        self.capture.outputs = {}
        self.last_objective = float(objective.detach())
        strategy.loss = strategy.loss - self.beta * objective.to(strategy.loss.dtype)

    # --- both: L2 -----------------------------------------------------------------------------

    def after_backward(self, strategy, **kwargs):
        add_weight_decay(strategy.model, self.weight_decay)

    # --- ascent mode --------------------------------------------------------------------------

    def before_training_exp(self, strategy, **kwargs):
        self._recent_x = self._recent_t = None  # the ascent batch holds the current experience only

    def after_update(self, strategy, **kwargs):
        if self.mode != "ascent" or self.step_size == 0:
            return
        self._remember(strategy.mb_x.detach(), strategy.mb_task_id.detach())
        if self._recent_x.shape[0] >= 2:
            self.ascend(strategy.model, self._recent_x, self._recent_t)

    def _remember(self, x: torch.Tensor, task_labels: torch.Tensor) -> None:
        if self._recent_x is not None:
            x = torch.cat([self._recent_x, x])
            task_labels = torch.cat([self._recent_t, task_labels])
        self._recent_x, self._recent_t = x[-self.batch_size:], task_labels[-self.batch_size:]

    def ascend(self, model, x: torch.Tensor, task_labels: torch.Tensor) -> None:
        """One plain gradient-ascent step of size α on R over the batch ``x``."""
        from avalanche.models.utils import avalanche_forward

        with capture_activations(self.taps, detach=False) as captured:
            avalanche_forward(model, x, task_labels)
        objective = mean_erank(captured[t.name][-1] for t in self.taps)
        parameters = trainable(model)
        gradients = torch.autograd.grad(objective, parameters, allow_unused=True)
        with torch.no_grad():
            for parameter, gradient in zip(parameters, gradients):
                if gradient is not None:
                    parameter.add_(gradient, alpha=self.step_size)
        self.last_objective = float(objective.detach())


def build(context, mode, beta, step_size, batch_size, weight_decay):
    from collapsebench import StrategyParts

    return StrategyParts(plugins=[EffectiveRankL2(context.model, mode, beta, step_size, batch_size, weight_decay)])
