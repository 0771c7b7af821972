"""Stopping a run whose training diverged, reporting the iteration where it happened.

A learning rate swept too high drives the loss to infinity and the weights to NaN within a few
updates; left running, the evaluators then failed inside their linear algebra and the run was
lost. Every ``LOSS_EVERY`` iterations and at the end of every epoch (before the evaluators'
own callbacks: Avalanche calls its evaluation plugin last), the guard reads the losses of the
iterations since its last check (kept detached), in one transfer. Reading each loss back at
its own step made a GPU wait for every minibatch, and on the CPU was the guard's main cost per
step (docs/performance.md). The run stops at most ``LOSS_EVERY - 1`` iterations after its
loss stopped being finite and reports the iteration where it did; the iterations in between
train on NaN, which changes nothing that is kept, and an evaluator that measures in between
records non-finite weights as unmeasured rather than failing.

The parameters are read every ``PARAMETER_EVERY`` iterations and at the end of every epoch, so
no evaluator, checkpoint or ``model.pt`` sees a non-finite weight unnoticed. A parameter that
takes part in the forward pass makes the next loss non-finite, which the loss check catches
within ``LOSS_EVERY`` iterations; the parameter check is for the others (a head the current
task does not use). Read every 16 iterations it cost 1.7% of a small MLP's training
(docs/performance.md), and read every iteration, 8%.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from avalanche.core import SupervisedPlugin


@dataclass
class TrainingDiverged(Exception):
    """Raised at the check that found the loss or a parameter no longer finite."""

    experience: int
    iteration: int  # 1-based, within the experience: where the loss, or the parameter check, found it
    what: str  # "loss" or the name of the first non-finite parameter
    loss: float | None

    def __str__(self) -> str:
        cause = "the training loss" if self.what == "loss" else f"parameter {self.what!r}"
        # 1-based, as the progress lines count experiences; results.json keeps the 0-based index.
        return f"training diverged: {cause} became non-finite in experience {self.experience + 1}, iteration {self.iteration}"

    def record(self) -> dict:
        loss = self.loss if self.loss is not None and torch.isfinite(torch.tensor(self.loss)) else None
        return {"experience": self.experience, "iteration": self.iteration, "cause": self.what, "loss": loss}


LOSS_EVERY = 16
#: A multiple of LOSS_EVERY: the parameters are read at a loss check.
PARAMETER_EVERY = 128


class DivergenceGuard(SupervisedPlugin):
    """Raises :class:`TrainingDiverged` once a minibatch loss or any parameter is NaN or infinite."""

    def __init__(self):
        super().__init__()
        self._losses: list = []  # the losses of the iterations since the last check, in order

    def before_training_exp(self, strategy, *args, **kwargs):
        self._losses = []

    def after_training_iteration(self, strategy, *args, **kwargs):
        loss = strategy.loss
        # Detached: holding the loss itself would hold its graph's nodes until the check (and,
        # under retain_graph, the graph's buffers), for no gain measurable here.
        self._losses.append(loss.detach() if isinstance(loss, torch.Tensor) else loss)
        # The clock has not yet counted this iteration (it is the template's last plugin).
        iteration = strategy.clock.train_exp_iterations + 1
        if iteration % LOSS_EVERY == 0:
            self._check(strategy, iteration, parameters=iteration % PARAMETER_EVERY == 0)

    def after_training_epoch(self, strategy, *args, **kwargs):
        self._check(strategy, strategy.clock.train_exp_iterations)

    def _check(self, strategy, iteration: int, parameters: bool = True) -> None:
        """Raises for the first non-finite loss since the last check, else (with ``parameters``) for
        a non-finite parameter; ``iteration``: the experience's 1-based iteration that just ended."""
        losses, self._losses = self._losses, []
        bad = _first_non_finite_loss(losses)
        if bad is not None:
            raise TrainingDiverged(experience=strategy.experience.current_experience,
                                   iteration=iteration - (len(losses) - 1 - bad), what="loss",
                                   loss=float(losses[bad].detach().float().mean()))
        culprit = _first_non_finite_parameter(strategy.model) if parameters else None
        if culprit is not None:
            raise TrainingDiverged(experience=strategy.experience.current_experience, iteration=iteration,
                                   what=culprit, loss=None)

    def __getstate__(self):
        # Checkpointed with the strategy, between experiences: the kept losses are not state.
        return {**self.__dict__, "_losses": []}


def _first_non_finite_loss(losses: list) -> int | None:
    """The index of the first loss tensor with a NaN or infinite element (else None), read in one
    transfer. A loss that is not a tensor (a plugin's float) is not read."""
    if not losses:
        return None
    with torch.no_grad():
        try:  # the usual case, tensors of one shape on one device: one stack, no loop in Python
            flags = torch.isfinite(torch.stack(losses)).reshape(len(losses), -1).all(1).tolist()
            return next((i for i, ok in enumerate(flags) if not ok), None)
        except (TypeError, RuntimeError):
            pass  # floats among them, or several shapes or devices
        tensors = [(i, loss) for i, loss in enumerate(losses) if torch.is_tensor(loss)]
        if not tensors:
            return None
        flags = torch.stack([torch.isfinite(loss).all().cpu() for _, loss in tensors]).tolist()
    return next((i for (i, _), ok in zip(tensors, flags) if not ok), None)


def _first_non_finite_parameter(model) -> str | None:
    named = [(name, p) for name, p in model.named_parameters()]
    if not named:
        return None
    # One reduction per tensor and one synchronisation: a NaN or infinity anywhere makes the total
    # non-finite. A total that only overflowed (huge but finite weights) is confirmed tensor by tensor.
    total = torch.stack([p.detach().float().sum() for _, p in named]).sum()
    if bool(torch.isfinite(total)):
        return None
    for name, p in named:
        if not bool(torch.isfinite(p.detach()).all()):
            return name
    return None
