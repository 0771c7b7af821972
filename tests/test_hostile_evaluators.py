"""Evaluators never crash on non-finite inputs (issue 17): they record null with a reason."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2, self.relu = nn.Linear(6, 8), nn.Linear(8, 3), nn.ReLU()

    def forward(self, x):
        return self.fc2(self.relu(self.fc1(x)))

    def collapsebench_taps(self):
        from collapsebench.taps import Tap

        return [Tap("fc1", self.relu, (self.fc1.weight,), incoming=self.fc1, outgoing=self.fc2, width=8)]


def context_and_strategy(fill: float):
    from collapsebench.evaluation import Recorder
    from collapsebench.probe import ProbeSet

    generator = torch.Generator().manual_seed(0)
    n = 30
    probe = ProbeSet(inputs=torch.randn(n, 6, generator=generator), targets=torch.randint(0, 3, (n,), generator=generator),
                     task_labels=torch.zeros(n, dtype=torch.long), experiences=torch.arange(n) % 2,
                     indices=torch.arange(n) // 2)
    model = Net()
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(fill)
    context = SimpleNamespace(probe=probe, recorder=Recorder(), config=None)
    strategy = SimpleNamespace(model=model, device="cpu", _criterion=nn.CrossEntropyLoss(),
                               experience=SimpleNamespace(current_experience=0),
                               clock=SimpleNamespace(train_iterations=5, train_exp_iterations=5))
    return context, strategy


def metric_classes():
    from collapsebench_plugins.evaluators.activations import ActivationMetric
    from collapsebench_plugins.evaluators.hessian import HessianMetric
    from collapsebench_plugins.evaluators.similarity import CkaMetric
    from collapsebench_plugins.evaluators.weights import WeightMetric

    return [WeightMetric, ActivationMetric, CkaMetric, HessianMetric]


@pytest.mark.parametrize("fill", [float("nan"), float("inf"), 1e30])  # 1e30: finite weights, activations overflow
@pytest.mark.parametrize("index", range(4))
def test_non_finite_weights_or_activations_record_null_with_a_reason(fill, index):
    from collapsebench.results import json_safe

    cls = metric_classes()[index]
    context, strategy = context_and_strategy(fill)
    metric = cls(context)
    metric._emit(strategy, "end")  # raised _LinAlgError before
    strategy.experience.current_experience, strategy.clock.train_iterations = 1, 10
    metric._emit(strategy, "end")  # CKA compares with the first measurement only now
    records = context.recorder.records
    assert records or cls.__name__ == "CkaMetric", "nothing recorded"
    for record in records:
        assert record["value"] is None or torch.isfinite(torch.tensor(record["value"]))
        if record["value"] is None:
            assert record.get("reason"), record
    json_safe(records)  # and it all goes into results.json


def test_a_real_evaluator_bug_still_raises():
    """Only failures on non-finite input are absorbed: an ordinary bug surfaces."""
    from collapsebench.evaluation import CollapseMetric

    class Broken(CollapseMetric):
        def measure(self, strategy, phase):
            raise ValueError("a bug")

    context, strategy = context_and_strategy(0.1)
    with pytest.raises(ValueError, match="a bug"):
        Broken(context.recorder)._emit(strategy, "end")
