"""Online accuracy (Dohare et al.'s permuted-MNIST metric): how many training samples the model
classifies correctly before the update that uses them.

It reads the training forward pass the strategy runs anyway. An Avalanche training plugin, not
an evaluator: it is recorded for every run, so it must cost next to nothing per minibatch.
"""

from __future__ import annotations

import torch
from avalanche.core import SupervisedPlugin


class OnlineAccuracy(SupervisedPlugin):
    """Counts, per training experience, the samples whose training output's argmax is the label.

    ``after_forward`` runs after the forward pass and before the backward pass and optimizer
    step, so every count is of the model as it was before the minibatch's update. With replay
    the counted minibatch includes the replayed samples, as it is what the model trains on.

    Per minibatch it only keeps the outputs and labels (the outputs detached: no autograd graph
    is held); every ``FLUSH_EVERY`` minibatches, and when asked, they are counted in one pass on
    their device. Counting each minibatch as it came cost four small tensor operations per step
    (a twentieth of a small MLP's step on MNIST, docs/performance.md), and reading the count back
    each time made the host wait for the device. The outputs are the values the forward pass
    produced, which the update does not change, so the counts are the same.
    """

    #: Minibatches kept before they are counted: bounds the memory held to that many outputs.
    FLUSH_EVERY = 64
    #: ``after_forward`` never reads ``strategy.loss`` (``dispatch.needs_empty_loss``).
    collapsebench_needs_empty_loss = False

    def __init__(self):
        super().__init__()
        self._correct = None  # a 0-d tensor on the model's device
        self._pending: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.seen = 0

    @property
    def correct(self) -> int:
        self._flush()
        return 0 if self._correct is None else int(self._correct)

    def before_training_exp(self, strategy, **kwargs):
        self._correct = None
        self._pending = []
        self.seen = 0

    def after_forward(self, strategy, **kwargs):
        output, targets = strategy.mb_output, strategy.mb_y
        # isinstance and .ndim/.shape, not torch.is_tensor, .dim() or len(): those are Python
        # functions or method calls, these are attribute reads, at every step.
        if not (isinstance(output, torch.Tensor) and isinstance(targets, torch.Tensor)
                and output.ndim == 2 and targets.ndim and output.shape[0] == targets.shape[0]):
            return
        n = targets.shape[0]
        pending = self._pending
        pending.append((output.detach(), targets))
        self.seen += n
        if len(pending) >= self.FLUSH_EVERY:
            self._flush()

    def _flush(self) -> None:
        if not self._pending:
            return
        outputs, targets = zip(*self._pending)
        self._pending = []
        with torch.no_grad():
            if len({o.shape[1] for o in outputs}) == 1:
                hits = (torch.cat(outputs).argmax(1) == torch.cat(targets)).sum()
            else:  # heads of different widths (a growing model): one count per minibatch
                hits = sum((o.argmax(1) == t).sum() for o, t in zip(outputs, targets))
        self._correct = hits if self._correct is None else self._correct + hits

    def accuracy(self) -> float | None:
        """The fraction counted since the experience began (None: no minibatch was seen)."""
        return self.correct / self.seen if self.seen else None

    def __getstate__(self):
        # Checkpointed with the strategy: counted first, so that no outputs are pickled.
        self._flush()
        return self.__dict__.copy()
