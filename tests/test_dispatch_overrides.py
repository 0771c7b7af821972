"""The lean dispatch (dispatch.with_lean_dispatch) and templates that define trigger methods.

A template's own ``_before_forward`` (Avalanche's DER and SCR replay there) must still run under
the lean dispatch, and a callback that changes the plugin list mid-iteration must be followed
as Avalanche's ``trigger_plugins`` follows it.
"""

from __future__ import annotations

import torch
from torch import nn

from collapsebench.dispatch import LeanDispatchMixin, with_lean_dispatch


def tiny_benchmark(seed: int):
    """One experience of 40 five-feature samples, labelled by the sign of their sum (test = train)."""
    from collapsebench_plugins.streams.tensors import assemble, tensor_dataset

    x = torch.randn(40, 5, generator=torch.Generator().manual_seed(seed))
    dataset = tensor_dataset(x, (x.sum(1) > 0).long())
    return assemble([dataset], [dataset], [{0, 1}])


def test_a_templates_own_triggers_are_kept():
    from avalanche.training import DER

    lean_der = with_lean_dispatch(DER)
    assert lean_der._before_forward is DER._before_forward
    assert lean_der._after_forward is LeanDispatchMixin._after_forward  # DER leaves this one to Avalanche


def test_an_overridden_trigger_is_still_called():
    from avalanche.training.templates import SupervisedTemplate

    from collapsebench.fastdata import TensorBatchesPlugin

    seen = []

    class OwnTrigger(SupervisedTemplate):
        def _after_forward(self, **kwargs):
            seen.append(self.mb_output.shape[0])
            super()._after_forward(**kwargs)

    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(5, 3))
    strategy = with_lean_dispatch(OwnTrigger)(
        model=net, optimizer=torch.optim.SGD(net.parameters(), lr=0.1), criterion=nn.CrossEntropyLoss(),
        train_mb_size=16, train_epochs=1, device="cpu", plugins=[TensorBatchesPlugin()], evaluator=None)
    strategy.train(tiny_benchmark(seed=0).train_stream[0])
    assert seen == [16, 16, 8]


def test_a_callback_that_adds_a_plugin_mid_iteration_is_followed_as_by_avalanche():
    from avalanche.core import SupervisedPlugin
    from avalanche.training.templates import SupervisedTemplate

    def train(lean: bool):
        log = []

        class Late(SupervisedPlugin):
            def before_backward(self, strategy, **kwargs):
                log.append(("late", "before_backward", strategy.clock.train_exp_iterations))

        class Adder(SupervisedPlugin):
            def after_forward(self, strategy, **kwargs):
                log.append(("adder", "after_forward", strategy.clock.train_exp_iterations))
                if strategy.clock.train_exp_iterations == 1:
                    strategy.plugins.append(Late())  # seen from the very next event on

        torch.manual_seed(0)
        net = nn.Sequential(nn.Linear(5, 3))
        cls = with_lean_dispatch(SupervisedTemplate) if lean else SupervisedTemplate
        strategy = cls(model=net, optimizer=torch.optim.SGD(net.parameters(), lr=0.1), criterion=nn.CrossEntropyLoss(),
                       train_mb_size=10, train_epochs=1, device="cpu", plugins=[Adder()], evaluator=None)
        strategy.train(tiny_benchmark(seed=1).train_stream[0])
        return log

    plain, lean = train(False), train(True)
    assert lean == plain
    assert ("late", "before_backward", 1) in plain and ("late", "before_backward", 0) not in plain

