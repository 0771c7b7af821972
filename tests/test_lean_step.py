"""leanstep: the template's minibatch methods without the calls that cannot change their result.

The bit-for-bit comparison of whole runs with and without the lean template is in
tests/test_avalanche_equivalence.py (test_lean_dispatch_calls_every_callback_that_does_something_in_order);
here: which templates get the lean methods, and that each takes its shortcut only where
Avalanche's method would have done nothing.
"""

from __future__ import annotations

import pickle

import pytest
import torch
from torch import nn

from collapsebench import leanstep
from collapsebench.dispatch import with_lean_dispatch
from collapsebench.fastdata import TensorBatches
from collapsebench.leanstep import PlacedMinibatch, lean_step_methods


def _supervised_template():
    from avalanche.training.templates import SupervisedTemplate

    return SupervisedTemplate


def _strategy(net, template=None, device="cpu"):
    cls = with_lean_dispatch(template or _supervised_template())
    return cls(model=net, optimizer=torch.optim.SGD(net.parameters(), lr=0.1), criterion=nn.CrossEntropyLoss(),
               train_mb_size=8, train_epochs=1, device=device, evaluator=None)


def _count_calls(monkeypatch, name):
    lean_step_methods(_supervised_template())  # Avalanche's originals are read on first use
    calls = []
    original = leanstep._AVALANCHE[name]

    def counted(self):
        calls.append(name)
        return original(self)

    monkeypatch.setitem(leanstep._AVALANCHE, name, counted)
    return calls


def test_avalanches_template_gets_both_and_an_override_keeps_its_own():
    template = _supervised_template()
    assert set(lean_step_methods(template)) == {"_unpack_minibatch", "forward"}

    class OwnForward(template):
        def forward(self):
            return super().forward()

    class OwnInput(template):
        @property
        def mb_x(self):
            return self.mbatch[0] * 2  # a forward that reads mb_x must see this

    assert set(lean_step_methods(OwnForward)) == {"_unpack_minibatch"}
    assert set(lean_step_methods(OwnInput)) == {"_unpack_minibatch"}
    assert with_lean_dispatch(OwnForward).forward is OwnForward.forward
    assert with_lean_dispatch(template).forward is leanstep._forward


def test_tensor_batches_are_marked_with_their_device_and_not_moved_again(monkeypatch):
    x, y, t = torch.randn(20, 4), torch.randint(0, 3, (20,)), torch.zeros(20, dtype=torch.long)
    batches = list(TensorBatches((x, y, t), batch_size=8, shuffle=True))
    assert [type(b) for b in batches] == [PlacedMinibatch] * 3
    assert all(b.device == torch.device("cpu") for b in batches)

    strategy = _strategy(nn.Linear(4, 3))
    moved = _count_calls(monkeypatch, "_unpack_minibatch")
    strategy.mbatch = batches[0]
    before = list(batches[0])
    strategy._unpack_minibatch()
    assert moved == [] and all(a is b for a, b in zip(strategy.mbatch, before))

    # Anything else goes through Avalanche's method: a tuple (made a list there), a plain list,
    # and a placed minibatch that says it is on another device.
    strategy.mbatch = (x[:8], y[:8], t[:8])
    strategy._unpack_minibatch()
    assert isinstance(strategy.mbatch, list)
    strategy.mbatch = [x[:8], y[:8], t[:8]]
    strategy._unpack_minibatch()
    elsewhere = PlacedMinibatch([x[:8], y[:8], t[:8]])
    elsewhere.device = torch.device("meta")
    strategy.mbatch = elsewhere
    strategy._unpack_minibatch()
    assert moved == ["_unpack_minibatch"] * 3


def test_a_placed_minibatch_pickles_with_its_device():
    batch = PlacedMinibatch([torch.ones(2), torch.zeros(2)])
    batch.device = torch.device("cpu")
    again = pickle.loads(pickle.dumps(batch))
    assert type(again) is PlacedMinibatch and again.device == batch.device and torch.equal(again[0], batch[0])


def test_forward_calls_the_model_directly_unless_it_takes_task_labels(monkeypatch):
    from avalanche.models import MultiHeadClassifier

    x, y, t = torch.randn(8, 4), torch.randint(0, 3, (8,)), torch.zeros(8, dtype=torch.long)
    torch.manual_seed(0)
    heads = MultiHeadClassifier(4, initial_out_features=3)
    plain, multi = _strategy(nn.Linear(4, 3)), _strategy(heads)  # built before Avalanche's forward is counted
    avalanche_forward = _count_calls(monkeypatch, "forward")

    plain.mbatch = [x, y, t]
    assert torch.equal(plain.forward(), plain.model(x))
    assert avalanche_forward == []

    multi.mbatch = [x, y, t]
    multi.experience = type("Experience", (), {"task_labels": [0]})()
    assert torch.equal(multi.forward(), heads(x, t))
    assert avalanche_forward == ["forward"]


def test_a_minibatch_without_task_labels_meets_avalanches_assertion(monkeypatch):
    strategy = _strategy(nn.Linear(4, 3))
    strategy.experience = type("Experience", (), {"task_labels": [0]})()
    strategy.mbatch = [torch.randn(8, 4), torch.randint(0, 3, (8,))]
    with pytest.raises(AssertionError, match="Task label not found"):
        strategy.forward()
