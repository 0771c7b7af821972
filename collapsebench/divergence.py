"""Stopping a run whose training diverged, at the iteration where it happened.

A learning rate swept too high drives the loss to infinity and the weights to NaN within a few
updates; left running, the evaluators then failed inside their linear algebra and the run was
lost. The check runs after every training iteration, before the evaluators' own callbacks
(Avalanche calls its evaluation plugin last), and costs one small reduction per parameter
tensor and one device synchronisation.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from avalanche.core import SupervisedPlugin


@dataclass
class TrainingDiverged(Exception):
    """Raised at the iteration boundary where the loss or a parameter stopped being finite."""

    experience: int
    iteration: int  # 1-based, within the experience
    what: str  # "loss" or the name of the first non-finite parameter
    loss: float | None

    def __str__(self) -> str:
        cause = "the training loss" if self.what == "loss" else f"parameter {self.what!r}"
        # 1-based, as the progress lines count experiences; results.json keeps the 0-based index.
        return f"training diverged: {cause} became non-finite in experience {self.experience + 1}, iteration {self.iteration}"

    def record(self) -> dict:
        loss = self.loss if self.loss is not None and torch.isfinite(torch.tensor(self.loss)) else None
        return {"experience": self.experience, "iteration": self.iteration, "cause": self.what, "loss": loss}


class DivergenceGuard(SupervisedPlugin):
    """Raises :class:`TrainingDiverged` once the minibatch loss or any parameter is NaN or infinite."""

    def after_training_iteration(self, strategy, *args, **kwargs):
        loss = strategy.loss
        loss_finite = bool(torch.isfinite(loss.detach()).all()) if torch.is_tensor(loss) else True
        culprit = None if loss_finite else "loss"
        if culprit is None:
            culprit = _first_non_finite_parameter(strategy.model)
        if culprit is not None:
            raise TrainingDiverged(
                experience=strategy.experience.current_experience,
                # Avalanche's clock is the template's last plugin: it has not yet counted this iteration.
                iteration=strategy.clock.train_exp_iterations + 1,
                what=culprit,
                loss=float(loss.detach().float().mean()) if torch.is_tensor(loss) else None,
            )


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
