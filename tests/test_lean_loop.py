"""leanloop: Avalanche's training epoch without the calls that cannot change its result.

Each run below trains twice, once in collapsebench's loop (``LeanLoopMixin``) and once in
Avalanche's own (``SGDUpdate.training_epoch`` put back on the same lean class), and must give the
same calls in the same order, the same loss at every step (value, shape, dtype) and the same
weights to the last bit. The whole-run comparisons (accuracy matrix, metrics, ``model.pt``)
against plain Avalanche are in tests/test_avalanche_equivalence.py.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from collapsebench import leanloop
from collapsebench.dispatch import needs_empty_loss, with_lean_dispatch
from collapsebench.evaluation import LeanEvaluationPlugin
from collapsebench.fastdata import TensorBatchesPlugin
from collapsebench.leanloop import LeanLoopMixin, criterion_as_loss


def _stream(seed=0, n=70):
    from collapsebench_plugins.streams.tensors import assemble, tensor_dataset

    x = torch.randn(n, 5, generator=torch.Generator().manual_seed(seed))
    dataset = tensor_dataset(x, (x.sum(1) > 0).long())
    return assemble([dataset], [dataset], [{0, 1}])


def _supervised():
    from avalanche.training.templates import SupervisedTemplate

    return SupervisedTemplate


def _train(plugins, *, avalanche_loop: bool, template=None, monkeypatch=None, epochs=2):
    """Train a small MLP on one experience; the loss seen after every backward pass, and the weights."""
    from avalanche.core import SupervisedPlugin
    from avalanche.training.templates.update_type.sgd_update import SGDUpdate

    losses = []

    class Losses(SupervisedPlugin):
        collapsebench_needs_empty_loss = False  # reads the loss only after the backward pass

        def after_backward(self, strategy, **kwargs):
            loss = strategy.loss
            losses.append((loss.detach().clone(), tuple(loss.shape), loss.dtype, loss._base is not None))

    cls = with_lean_dispatch(template or _supervised())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # no loggers, on purpose
        evaluator = LeanEvaluationPlugin(loggers=[])  # a run's, metrics-free: no per-step callbacks
    if avalanche_loop:
        assert issubclass(cls, LeanLoopMixin)
        monkeypatch.setattr(LeanLoopMixin, "training_epoch", SGDUpdate.training_epoch)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 2))
    strategy = cls(model=net, optimizer=torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9),
                   criterion=nn.CrossEntropyLoss(), train_mb_size=16, train_epochs=epochs, device="cpu",
                   plugins=[TensorBatchesPlugin(), *plugins, Losses()], evaluator=evaluator)
    strategy.train(_stream().train_stream[0])
    if avalanche_loop:
        monkeypatch.undo()
    return strategy, losses, [p.detach().clone() for p in net.parameters()]


def _assert_same(lean, avalanche):
    (_, lean_losses, lean_params), (_, avalanche_losses, avalanche_params) = lean, avalanche
    assert len(lean_losses) == len(avalanche_losses) == 10  # 70 samples: 5 minibatches, 2 epochs
    for (a, shape_a, dtype_a, _), (b, shape_b, dtype_b, _) in zip(lean_losses, avalanche_losses):
        assert torch.equal(a, b) and shape_a == shape_b == (1,) and dtype_a == dtype_b
    assert all(torch.equal(a, b) for a, b in zip(lean_params, avalanche_params))


def _plugin(**callbacks):
    from avalanche.core import SupervisedPlugin

    return type("Custom", (SupervisedPlugin,), callbacks)()


def test_avalanches_loop_is_the_one_this_module_copies():
    """An Avalanche upgrade that changes the loop or its empty loss fails here, not silently."""
    from avalanche.training.templates.base_sgd import BaseSGDTemplate
    from avalanche.training.templates.update_type.sgd_update import SGDUpdate

    assert SGDUpdate.training_epoch.__code__.co_names == (
        "dataloader", "mbatch", "_stop_training", "_unpack_minibatch", "_before_training_iteration", "optimizer",
        "zero_grad", "_make_empty_loss", "loss", "_before_forward", "forward", "mb_output", "_after_forward",
        "criterion", "_before_backward", "backward", "_after_backward", "_before_update", "optimizer_step",
        "_after_update", "_after_training_iteration")
    assert BaseSGDTemplate._make_empty_loss.__code__.co_names == ("torch", "zeros", "device")
    assert leanloop.fits(_supervised())


def test_a_template_with_its_own_loop_triggers_or_empty_loss_keeps_avalanches():
    from avalanche.training import DER

    template = _supervised()

    class OwnLoop(template):
        def training_epoch(self, **kwargs):
            return super().training_epoch(**kwargs)

    class OwnEmptyLoss(template):
        def _make_empty_loss(self):
            return torch.zeros(1, dtype=torch.float64, device=self.device)

    class OwnTrigger(template):
        def _after_backward(self, **kwargs):
            super()._after_backward(**kwargs)

    assert issubclass(with_lean_dispatch(template), LeanLoopMixin)
    for kept in (OwnLoop, OwnEmptyLoss, OwnTrigger, DER):
        assert not leanloop.fits(kept), kept
        assert not issubclass(with_lean_dispatch(kept), LeanLoopMixin), kept
    assert with_lean_dispatch(OwnLoop).training_epoch is OwnLoop.training_epoch


def test_plugins_that_do_not_need_the_empty_loss_get_the_criterion_as_the_loss(monkeypatch):
    """The online count, ER+L2-like loss replacement: the lean loss, and Avalanche's numbers."""
    from collapsebench.online import OnlineAccuracy

    views = []

    def replace(plugin, strategy, **kwargs):
        views.append(strategy.loss._base is not None)
        strategy.loss = strategy.loss + 0.01 * sum((p ** 2).sum() for p in strategy.model.parameters())

    plugins = lambda: [OnlineAccuracy(), _plugin(before_backward=replace, collapsebench_needs_empty_loss=False)]  # noqa: E731
    lean = _train(plugins(), avalanche_loop=False)
    assert not needs_empty_loss(lean[0])
    assert len(views) == 10 and all(views)  # the lean path ran: no tensor made per step ...
    _assert_same(lean, _train(plugins(), avalanche_loop=True, monkeypatch=monkeypatch))  # ... same numbers


def test_a_plugin_adding_to_the_loss_in_place_gets_avalanches_empty_loss(monkeypatch):
    """EWC and LwF add to ``strategy.loss`` in place. On the criterion's own output that would
    change a value autograd saved (here: a criterion ending in ``exp``), and break the backward."""

    class ExpCriterion(_supervised()):
        def criterion(self):
            return super().criterion().exp()  # exp's backward reads its own output

    def add_in_place(plugin, strategy, **kwargs):
        strategy.loss += 0.01 * sum((p ** 2).sum() for p in strategy.model.parameters())

    lean = _train([_plugin(before_backward=add_in_place)], avalanche_loop=False, template=ExpCriterion)
    assert needs_empty_loss(lean[0])
    assert not any(is_view for *_, is_view in lean[1])
    _assert_same(lean, _train([_plugin(before_backward=add_in_place)], avalanche_loop=True, template=ExpCriterion,
                              monkeypatch=monkeypatch))

    # What the rule prevents: the same in-place addition on the criterion's own output.
    output = lean[0].model(torch.randn(4, 5))
    loss = criterion_as_loss(lean[0], nn.functional.cross_entropy(output, torch.zeros(4).long()).exp())
    loss += 1.0
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()


def test_a_forward_callback_reading_the_loss_sees_avalanches_empty_loss(monkeypatch):
    seen = []

    def read(plugin, strategy, **kwargs):
        seen.append(strategy.loss.clone())

    lean = _train([_plugin(after_forward=read)], avalanche_loop=False)
    assert len(seen) == 10 and all(torch.equal(loss, torch.zeros(1)) for loss in seen)
    _assert_same(lean, _train([_plugin(after_forward=read)], avalanche_loop=True, monkeypatch=monkeypatch))


def test_a_plugin_added_mid_iteration_that_needs_the_empty_loss_gets_it(monkeypatch):
    """Added in ``after_forward``, its in-place ``before_backward`` runs in that same iteration."""
    log = []

    def train(avalanche_loop):
        log.clear()

        def add_in_place(plugin, strategy, **kwargs):
            log.append(("in place", strategy.clock.train_exp_iterations, strategy.loss._base is None))
            strategy.loss += 0.5

        def add_plugin(plugin, strategy, **kwargs):
            if strategy.clock.train_exp_iterations == 2:
                strategy.plugins.append(_plugin(before_backward=add_in_place))

        adder = _plugin(after_forward=add_plugin, collapsebench_needs_empty_loss=False)
        result = _train([adder], avalanche_loop=avalanche_loop, monkeypatch=monkeypatch)
        return result, list(log)

    (lean, lean_log), (avalanche, avalanche_log) = train(False), train(True)
    assert lean_log == avalanche_log and lean_log[0] == ("in place", 2, True)  # a fresh tensor, as Avalanche's
    assert all(is_view for *_, is_view in lean[1][:2]) and not any(is_view for *_, is_view in lean[1][2:])
    _assert_same(lean, avalanche)


def test_a_criterion_of_another_dtype_or_shape_takes_avalanches_path():
    strategy, *_ = _train([], avalanche_loop=False, epochs=1)
    as_float64 = criterion_as_loss(strategy, torch.tensor(1.5, dtype=torch.float64))
    assert as_float64.dtype == torch.float32 and as_float64.shape == (1,) and as_float64._base is None
    one = torch.tensor([2.0])
    assert criterion_as_loss(strategy, one)._base is one  # already one element: a view of it
    with pytest.raises(RuntimeError):  # Avalanche's own error for a loss that is not one number
        criterion_as_loss(strategy, torch.ones(3))


def test_the_loss_device_cache_stays_out_of_checkpoints(monkeypatch):
    from collapsebench.checkpoint import transient

    strategy, *_ = _train([], avalanche_loop=False)
    assert "_collapsebench_loss_device" in strategy.__dict__
    assert "_collapsebench_loss_device" in transient(strategy)


def _backward_starts(monkeypatch):
    """The shape of every tensor whose ``.backward`` is called from now on (the loss's or the criterion's)."""
    shapes = []
    original = torch.Tensor.backward

    def recording(self, *args, **kwargs):
        shapes.append(tuple(self.shape))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(torch.Tensor, "backward", recording)
    return shapes


def test_with_nothing_between_criterion_and_backward_the_backward_starts_from_the_criterion(monkeypatch):
    """The view's node is skipped (its gradient passes unchanged): the same weights as Avalanche's."""
    with monkeypatch.context() as patch:
        shapes = _backward_starts(patch)
        lean = _train([], avalanche_loop=False)
    assert shapes == [()] * 10  # the criterion's own value ...
    assert all(shape == (1,) and is_view for _, shape, _, is_view in lean[1])  # ... strategy.loss still the view
    _assert_same(lean, _train([], avalanche_loop=True, monkeypatch=monkeypatch))


def test_a_callback_before_the_backward_pass_gets_the_backward_from_strategy_loss(monkeypatch):
    """It may have hooked or replaced the loss: the backward is ``strategy.backward()``, as Avalanche's."""
    hooked = []

    def hook(plugin, strategy, **kwargs):
        strategy.loss.register_hook(lambda grad: hooked.append(grad.clone()))

    plugins = lambda: [_plugin(before_backward=hook, collapsebench_needs_empty_loss=False)]  # noqa: E731
    with monkeypatch.context() as patch:
        shapes = _backward_starts(patch)
        lean = _train(plugins(), avalanche_loop=False)
    assert shapes == [(1,)] * 10
    assert len(hooked) == 10 and all(torch.equal(grad, torch.ones(1)) for grad in hooked)
    _assert_same(lean, _train(plugins(), avalanche_loop=True, monkeypatch=monkeypatch))


def test_a_template_or_strategy_with_its_own_backward_keeps_it(monkeypatch):
    calls = []

    class OwnBackward(_supervised()):
        def backward(self):
            calls.append("template")
            super().backward()

    lean = _train([], avalanche_loop=False, template=OwnBackward)
    assert calls == ["template"] * 10
    _assert_same(lean, _train([], avalanche_loop=True, template=OwnBackward, monkeypatch=monkeypatch))

    calls.clear()

    def patch_instance(plugin, strategy, **kwargs):
        strategy.backward = lambda: (calls.append("instance"), strategy.loss.backward())

    _train([_plugin(before_training_exp=patch_instance)], avalanche_loop=False)
    assert calls == ["instance"] * 10
