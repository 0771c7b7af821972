"""Avalanche's evaluation, less the per-experience set-up that changes nothing.

Under ``current`` evaluation a long stream calls ``strategy.eval`` once per experience on one
test experience: one forward pass over its images, wrapped in Avalanche's set-up and clean-up.
On permuted MNIST with an MLP that wrapping cost more than the forward pass
(docs/performance.md, long streams): three parts of it do work whose outcome is known
beforehand, and :class:`LeanEvalMixin` (put in front of the template, with
``dispatch.LeanDispatchMixin``) skips exactly that work:

- ``_load_train_state`` restores every module's training mode by calling ``module.train(mode)``
  on each module in turn, and each call walks all the module's descendants again. When every
  module uses torch's own ``Module.train``, setting each module's ``training`` flag to its saved
  value leaves the same modes, without the walks.
- ``model_adaptation`` ends with ``model.to(device)``, which walks every parameter and buffer
  even when all of them are on that device already. When they are (checked after Avalanche's
  dynamic-module adaptation, which may add some) and no module overrides ``_apply`` or ``to``,
  the move would leave every tensor where it is, and is skipped.
- ``make_eval_dataloader`` builds Avalanche's data loader, which ``fastdata.TensorBatchesPlugin``
  replaces right away with minibatches of gathered tensors. Here the loader is built from the
  same dataset only if something reads or iterates it (``fastdata.DeferredLoader``). The
  training experience's loader (``make_train_dataloader``) is deferred in the same way: the
  plugin replaces it at every experience, and replay replaces the plugin's in turn, so that
  Avalanche's training loader was built and thrown away unread at every experience.

Everything else, every Avalanche training plugin callback and every metric and logger call
among them, runs as in Avalanche's ``eval``. Each shortcut applies only where the template's
method is Avalanche's own (a template that overrides one keeps its version), and
tests/test_lean_eval.py checks a run's accuracies, metric values and module modes against
Avalanche's path.
"""

from __future__ import annotations

import torch


def _next_definition(cls: type, after: type, name: str):
    """The ``name`` attribute that ``super(after, cls)`` would find: what this mixin overrides."""
    mro = cls.__mro__
    for klass in mro[mro.index(after) + 1:]:
        if name in klass.__dict__:
            return klass.__dict__[name]
    return None


def _avalanche(module: str, owner: str, name: str):
    import importlib

    return getattr(importlib.import_module(module), owner).__dict__[name]


_BASE_SGD = "avalanche.training.templates.base_sgd"
_BATCH_OBSERVATION = "avalanche.training.templates.observation_type.batch_observation"


def _uses_torch_train(modules) -> bool:
    return all(type(m).train is torch.nn.Module.train for m in modules)


def _placed_on(model: torch.nn.Module, device) -> bool:
    """Whether ``model.to(device)`` would leave every tensor as it is."""
    target = torch.device(device)
    for module in model.modules():
        if type(module)._apply is not torch.nn.Module._apply:
            return False  # a module that does more when moved (an RNN re-flattens its weights)
    if type(model).to is not torch.nn.Module.to:
        return False
    for tensor in (*model.parameters(), *model.buffers()):
        if tensor.device != target or (tensor.grad is not None and tensor.grad.device != target):
            return False
    return True


class LeanEvalMixin:
    """Put before an Avalanche SGD template class: its ``eval``, and its training's loader, skip
    set-up that changes nothing."""

    def _load_train_state(self, prev_state):
        modes = prev_state["model_training_mode"]
        named = list(self.model.named_modules())
        if (_next_definition(type(self), LeanEvalMixin, "_load_train_state")
                is not _avalanche(_BASE_SGD, "BaseSGDTemplate", "_load_train_state")
                or not _uses_torch_train(m for _, m in named) or any(name not in modes for name, _ in named)):
            return super()._load_train_state(prev_state)
        # What Avalanche's BaseTemplate and BaseSGDTemplate restore, in their order.
        self.experience = prev_state["experience"]
        self.is_training = prev_state["is_training"]
        for name, module in named:
            module.training = modes[name]
        self.adapted_dataset = prev_state["adapted_dataset"]
        self.dataloader = prev_state["dataloader"]

    def model_adaptation(self, model=None):
        if (_next_definition(type(self), LeanEvalMixin, "model_adaptation")
                is not _avalanche(_BATCH_OBSERVATION, "BatchObservation", "model_adaptation")):
            return super().model_adaptation(model)
        from avalanche.benchmarks import OnlineCLExperience
        from avalanche.models.utils import avalanche_model_adaptation

        model = self.model if model is None else model
        assert self.experience is not None
        # Avalanche's BatchObservation.model_adaptation, up to the final move to the device.
        experience = self.experience
        if isinstance(experience, OnlineCLExperience) and self.is_training and experience.access_task_boundaries:
            experience = experience.origin_experience
        avalanche_model_adaptation(model, experience)
        return model if _placed_on(model, self.device) else model.to(self.device)

    def make_train_dataloader(self, **kwargs):
        return self._avalanche_loader_on_use("make_train_dataloader", super().make_train_dataloader, kwargs)

    def make_eval_dataloader(self, **kwargs):
        return self._avalanche_loader_on_use("make_eval_dataloader", super().make_eval_dataloader, kwargs)

    def _avalanche_loader_on_use(self, name: str, build, kwargs):
        from collapsebench.fastdata import DeferredLoader, TensorBatchesPlugin

        # Deferred only where TensorBatchesPlugin, the template's first plugin, replaces it or
        # (for data it cannot gather) builds it before any other plugin sees it.
        if (_next_definition(type(self), LeanEvalMixin, name) is not _avalanche(_BASE_SGD, "BaseSGDTemplate", name)
                or not self.plugins or not isinstance(self.plugins[0], TensorBatchesPlugin)):
            return build(**kwargs)
        # What Avalanche's method reads to choose and fill its loader, as it is now.
        dataset, experience = self.adapted_dataset, self.experience

        def avalanche_loader():
            # Built as Avalanche would have built it then: from that dataset, with these arguments.
            current = self.adapted_dataset, self.experience, self.dataloader
            self.adapted_dataset, self.experience = dataset, experience
            try:
                build(**kwargs)
                return self.dataloader
            finally:
                self.adapted_dataset, self.experience, self.dataloader = current

        self.dataloader = DeferredLoader(avalanche_loader)
        return None
