"""Avalanche's training epoch, event for event, without the calls that cannot change its result.

Avalanche's ``SGDUpdate.training_epoch`` runs, for every minibatch, eight trigger methods (one per
per-iteration event) and builds the loss as ``torch.zeros(1)`` to which the criterion is added
in place. :class:`LeanLoopMixin` keeps that loop's order of events and of the template's methods
(``_unpack_minibatch``, ``forward``, ``criterion``, ``backward``, ``optimizer_step``), and differs
in two things only:

- The callbacks of each event are called directly (``dispatch.callbacks_for``, the list the
  lean trigger method would walk, so a plugin added mid-iteration is still called from the next
  event on); an event without callbacks costs a dictionary look-up, not a method call.
- Where no callback before the backward pass relies on Avalanche's empty loss
  (``dispatch.needs_empty_loss``), the loss is the criterion's value seen as a one-element tensor
  (``criterion.view(1)``): the shape, dtype, device and value of ``zeros(1) + criterion``, and
  the same gradients (both nodes pass the gradient on unchanged), without creating a tensor and
  an addition node per step. The one value that differs in form is a criterion of exactly -0.0,
  which Avalanche's addition turns into +0.0. A criterion of another dtype, device or shape
  takes Avalanche's path, with its casts and errors.
- Where, in addition, no callback runs between the criterion and the backward pass (no
  ``before_backward`` callback) and the template's ``backward`` is Avalanche's, the backward pass
  starts from the criterion, not from its one-element view. Nothing can have seen the view by
  then (no hook, no in-place change), the view's node would pass the gradient on unchanged, and
  going through it cost some 6 microseconds per step of the benchmark's MLP, half a point
  (docs/performance.md). Autograd hooks that run during the backward pass still find
  ``strategy.loss`` set to the view, as before.

It is used only where the template's epoch loop, empty loss and per-iteration trigger methods are
Avalanche's own (``dispatch.with_lean_dispatch``); results are the same to the last bit
(tests/test_lean_loop.py). Avalanche's loop (avalanche/training/templates/update_type/
sgd_update.py) is pinned by a test, so an upgrade that changes it fails there instead of being
silently replaced by this copy.
"""

from __future__ import annotations

import functools

import torch

from collapsebench.dispatch import callbacks_for, needs_empty_loss


def _loss_device(strategy) -> torch.device:
    # The device of Avalanche's torch.zeros(1, device=strategy.device): "cuda" resolves to an index.
    device = strategy.device
    cache = strategy.__dict__.get("_collapsebench_loss_device")
    if cache is None or cache[0] != device:
        cache = strategy.__dict__["_collapsebench_loss_device"] = (device, torch.empty(0, device=device).device)
    return cache[1]


def viewable(strategy, criterion) -> bool:
    """Whether ``criterion.view(1)`` is the tensor ``zeros(1) + criterion`` would give (but for -0.0)."""
    return (type(criterion) is torch.Tensor and criterion.shape in ((), (1,))
            and criterion.dtype == torch.get_default_dtype() and criterion.device == _loss_device(strategy))


def criterion_as_loss(strategy, criterion):
    """``zeros(1) + criterion`` without the addition where it would give the same tensor; else Avalanche's."""
    if viewable(strategy, criterion):
        return criterion.view(1)
    loss = strategy._make_empty_loss()
    loss += criterion
    return loss


@functools.cache
def _avalanches_backward():
    from avalanche.training.templates.base_sgd import BaseSGDTemplate

    return BaseSGDTemplate.__dict__["backward"]


def uses_avalanches_backward(strategy) -> bool:
    """Whether ``strategy.backward()`` is Avalanche's ``self.loss.backward(retain_graph=self.retain_graph)``."""
    return getattr(type(strategy), "backward", None) is _avalanches_backward() and "backward" not in strategy.__dict__


class LeanLoopMixin:
    """Put before an Avalanche SGD template whose ``training_epoch`` is ``SGDUpdate``'s."""

    #: Caches of this process; checkpoints leave them out.
    collapsebench_transient = ("_collapsebench_loss_device",)

    def training_epoch(self, **kwargs):
        """Avalanche's ``SGDUpdate.training_epoch``: the same events, in the same order."""
        avalanche_backward = uses_avalanches_backward(self)
        for self.mbatch in self.dataloader:
            if self._stop_training:
                break

            self._unpack_minibatch()
            for callback in callbacks_for(self, "before_training_iteration"):
                callback(self, **kwargs)

            self.optimizer.zero_grad()
            # Avalanche's empty loss, made only where a callback may read it or add to it in place;
            # a callback that starts needing it mid-iteration gets it before its next event.
            empty_loss = needs_empty_loss(self)
            if empty_loss:
                self.loss = self._make_empty_loss()

            for callback in callbacks_for(self, "before_forward"):
                callback(self, **kwargs)
            self.mb_output = self.forward()
            if not empty_loss and needs_empty_loss(self):
                empty_loss, self.loss = True, self._make_empty_loss()
            for callback in callbacks_for(self, "after_forward"):
                callback(self, **kwargs)

            if not empty_loss and needs_empty_loss(self):
                empty_loss, self.loss = True, self._make_empty_loss()
            criterion = None  # set where the loss is its one-element view
            if empty_loss:
                self.loss += self.criterion()
            else:
                criterion = self.criterion()
                if viewable(self, criterion):
                    self.loss = criterion.view(1)
                else:
                    self.loss, criterion = criterion_as_loss(self, criterion), None

            before_backward = callbacks_for(self, "before_backward")
            for callback in before_backward:
                callback(self, **kwargs)
            if criterion is not None and not before_backward and avalanche_backward:
                criterion.backward(retain_graph=self.retain_graph)  # the view's gradients, without its node
            else:
                self.backward()
            for callback in callbacks_for(self, "after_backward"):
                callback(self, **kwargs)

            for callback in callbacks_for(self, "before_update"):
                callback(self, **kwargs)
            self.optimizer_step()
            for callback in callbacks_for(self, "after_update"):
                callback(self, **kwargs)

            for callback in callbacks_for(self, "after_training_iteration"):
                callback(self, **kwargs)


#: What :class:`LeanLoopMixin` stands in for: each must be Avalanche's own in the template.
STANDS_IN_FOR = ("training_epoch", "_make_empty_loss") + tuple(
    f"_{event}" for event in ("before_training_iteration", "before_forward", "after_forward", "before_backward",
                              "after_backward", "before_update", "after_update", "after_training_iteration"))


def fits(template_cls: type) -> bool:
    """Whether ``template_cls`` runs Avalanche's own epoch loop, empty loss and trigger methods."""
    from avalanche.training.templates.base_sgd import BaseSGDTemplate
    from avalanche.training.templates.update_type.sgd_update import SGDUpdate

    avalanche = {"training_epoch": SGDUpdate.__dict__["training_epoch"],
                 **{name: BaseSGDTemplate.__dict__[name] for name in STANDS_IN_FOR[1:]}}
    return all(getattr(template_cls, name, None) is function for name, function in avalanche.items())
