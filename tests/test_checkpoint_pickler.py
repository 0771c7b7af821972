"""Checkpoints are pickled by Python's C pickler where its output means the same as dill's,
and by dill (Avalanche's pickler) wherever it would not: objects with a reducer registered with
dill, anything from ``__main__``, and what the C pickler refuses. Both load with Avalanche's
``maybe_load_checkpoint`` (dill), which tests/test_resume.py exercises end to end."""

from __future__ import annotations

import json
import pickle

import dill
import pytest
import torch

from collapsebench import checkpoint
from conftest import QUICK


class Clock:
    train_exp_counter = 3


class Holder:
    """A stand-in strategy: what _save_strategy reads (clock) and whatever it is given to hold."""

    def __init__(self, **attributes):
        self.clock = Clock()
        self.__dict__.update(attributes)


class RegisteredWithDill:
    def __init__(self, value):
        self.value = value


@dill.register(RegisteredWithDill)
def _save_registered(pickler, obj):
    pickler.save_reduce(RegisteredWithDill, (obj.value * 10,), obj=obj)  # visible: the value changes


@pytest.fixture
def pickle_modules(monkeypatch):
    """The pickle module of each torch.save call that completed."""
    used = []
    real = torch.save

    def spy(obj, f, pickle_module=pickle, **kwargs):
        real(obj, f, pickle_module=pickle_module, **kwargs)
        used.append("dill" if pickle_module is dill else "c pickler")

    monkeypatch.setattr(torch, "save", spy)
    return used


def save_and_load(tmp_path, strategy, exclude=()):
    path = tmp_path / "checkpoint.pkl"
    checkpoint._save_strategy(strategy, path, exclude=exclude)
    return torch.load(path, pickle_module=dill, weights_only=False)


def test_plain_state_goes_through_the_c_pickler_and_loads_with_dill(tmp_path, pickle_modules):
    weights = torch.arange(6.0).view(2, 3)
    data = save_and_load(tmp_path, Holder(weights=weights, device=torch.device("cpu"), dropped=1), exclude=["dropped"])
    assert pickle_modules == ["c pickler"]
    restored = data["strategy"]
    assert torch.equal(restored.weights, weights) and restored.device == torch.device("cpu")
    assert not hasattr(restored, "dropped") and data["exp_counter"] == 3


def test_a_device_keeps_avalanches_reduction_so_devices_are_mapped_on_load(tmp_path, pickle_modules):
    from avalanche.checkpointing import checkpoint_internals

    path = tmp_path / "checkpoint.pkl"
    checkpoint._save_strategy(Holder(device=torch.device("cpu")), path, exclude=())
    assert pickle_modules == ["c pickler"]
    previous = checkpoint_internals.CHECKPOINT_DEVICE_MAP
    checkpoint_internals.CHECKPOINT_DEVICE_MAP = {"cpu": "meta"}  # what maybe_load_checkpoint sets
    try:
        restored = torch.load(path, pickle_module=dill, weights_only=False)["strategy"]
    finally:
        checkpoint_internals.CHECKPOINT_DEVICE_MAP = previous
    assert restored.device == torch.device("meta")


@pytest.mark.parametrize("make", [
    lambda: Holder(callback=lambda x: x + 1),  # refused by the C pickler
    lambda: Holder(kept=RegisteredWithDill(4)),  # a reducer registered with dill
    lambda: Holder(kept=type("FromMain", (), {"__module__": "__main__"})()),  # dill pickles it by value
], ids=["lambda", "dill-registered", "from-main"])
def test_what_only_dill_pickles_the_same_way_is_pickled_by_dill(tmp_path, pickle_modules, make):
    holder = make()
    restored = save_and_load(tmp_path, holder)["strategy"]
    assert pickle_modules == ["dill"]
    if hasattr(holder, "callback"):
        assert restored.callback(1) == 2
    elif isinstance(holder.kept, RegisteredWithDill):
        assert restored.kept.value == 40  # dill's registered reducer ran


def test_a_real_run_checkpoints_through_the_c_pickler(cli, tmp_path, pickle_modules):
    """Replay and the evaluators included: nothing in a built-in run needs dill, so none falls back
    (a fallback on every checkpoint would quietly triple its cost)."""
    code, _, err = cli("run", *QUICK, "--strategy", "replay", "--strategy-option", "replay.mem_size=50",
                       "--evaluators", "weights,cka", "--out", tmp_path / "run")
    assert code == 0, err
    assert pickle_modules and set(pickle_modules) == {"c pickler"}, pickle_modules
    assert json.loads((tmp_path / "run" / "results.json").read_text())["status"] == "complete"
