"""Online accuracy (Dohare et al.'s permuted-MNIST metric): how many training samples the model
classifies correctly before the update that uses them.

It reads the training forward pass the strategy runs anyway, so it costs one argmax per
minibatch. An Avalanche training plugin, not an evaluator: it is recorded for every run.
"""

from __future__ import annotations

import torch
from avalanche.core import SupervisedPlugin


class OnlineAccuracy(SupervisedPlugin):
    """Counts, per training experience, the samples whose training output's argmax is the label.

    ``after_forward`` runs after the forward pass and before the backward pass and optimizer
    step, so every count is of the model as it was before the minibatch's update. With replay
    the counted minibatch includes the replayed samples, as it is what the model trains on.
    """

    def __init__(self):
        super().__init__()
        self._correct = None  # a 0-d tensor on the model's device, summed without leaving it
        self.seen = 0

    @property
    def correct(self) -> int:
        return 0 if self._correct is None else int(self._correct)

    def before_training_exp(self, strategy, **kwargs):
        self._correct = None
        self.seen = 0

    def after_forward(self, strategy, **kwargs):
        output, targets = strategy.mb_output, strategy.mb_y
        if not torch.is_tensor(output) or output.dim() != 2 or len(output) != len(targets):
            return
        with torch.no_grad():
            # Summed on the device: reading the count back every minibatch (int()) would make
            # the host wait for the device at every step.
            hits = (output.argmax(1) == targets).sum()
            self._correct = hits if self._correct is None else self._correct.add_(hits)
        self.seen += len(targets)

    def accuracy(self) -> float | None:
        """The fraction counted since the experience began (None: no minibatch was seen)."""
        return self.correct / self.seen if self.seen else None
