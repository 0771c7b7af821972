"""collapsebench.leaneval: Avalanche's eval with the set-up that changes nothing skipped gives the
same accuracies, metric values, TensorBoard scalars and module modes as Avalanche's own path,
and steps aside wherever a shortcut's premise does not hold."""

from __future__ import annotations

import json

import pytest
import torch

from collapsebench import fastdata, leaneval
from collapsebench.leaneval import LeanEvalMixin
from test_streams import mnist_root  # noqa: F401  (fixture)

pytestmark = pytest.mark.filterwarnings("ignore:No loggers specified")

SHORTCUTS = ("_load_train_state", "model_adaptation", "make_eval_dataloader", "make_train_dataloader")


def avalanche_path(monkeypatch) -> list[str]:
    """Turn the shortcuts into Avalanche's own methods; return a log of the shortcut calls."""
    for name in SHORTCUTS:
        def plain(self, *args, _name=name, **kwargs):
            return getattr(super(LeanEvalMixin, self), _name)(*args, **kwargs)

        monkeypatch.setattr(LeanEvalMixin, name, plain)


def scalars(run_dir) -> dict:
    """Every TensorBoard scalar of a run: tag -> [(step, value)], wall times left out."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    values: dict = {}
    for events in sorted(run_dir.rglob("events.out.tfevents.*")):
        accumulator = EventAccumulator(str(events), size_guidance={"scalars": 0})
        accumulator.Reload()
        for tag in accumulator.Tags()["scalars"]:
            values.setdefault(tag, []).extend((e.step, e.value) for e in accumulator.Scalars(tag))
    return values


def run(cli, out, root, *extra):
    args = ["--stream", "permuted-mnist", "--scenario", "domain", "--data-root", root,
            "--stream-option", "n_experiences=4", "--model-option", "widths=[16,8]", "--probe-size", "8",
            "--epochs", "2", "--batch-size", "7", "--seed", "3", *extra]
    code, _, err = cli("run", *args, "--out", out)
    assert code == 0, err
    return json.loads((out / "results.json").read_text())


@pytest.mark.parametrize("evaluation", ["current", "seen", "every:2"])
def test_a_run_is_identical_with_and_without_the_shortcuts(cli, mnist_root, tmp_path, monkeypatch, evaluation):
    taken = []
    placed = leaneval._placed_on
    monkeypatch.setattr(leaneval, "_placed_on", lambda model, device: taken.append(placed(model, device)) or taken[-1])
    lean = run(cli, tmp_path / "lean", mnist_root, "--evaluation", evaluation, "--evaluators", "weights")
    assert taken and all(taken), "the move to the device was not skipped"
    avalanche_path(monkeypatch)
    plain = run(cli, tmp_path / "avalanche", mnist_root, "--evaluation", evaluation, "--evaluators", "weights")
    assert lean["accuracy_matrix"] == plain["accuracy_matrix"]
    assert sum(v is not None for row in lean["accuracy_matrix"] for v in row) == lean["evaluation"]["measured_cells"]
    for key in ("online_accuracy", "metrics", "summary"):
        assert lean[key] == plain[key], key
    lean_scalars, plain_scalars = scalars(tmp_path / "lean"), scalars(tmp_path / "avalanche")
    assert any(tag.startswith("Top1_Acc_Exp/eval_phase") for tag in lean_scalars)
    assert lean_scalars == plain_scalars


def test_resuming_a_current_run_still_equals_the_uninterrupted_one(cli, mnist_root, tmp_path):
    """The resume path (test_resume.py does it in depth) with the shortcuts on, end to end."""
    whole = run(cli, tmp_path / "whole", mnist_root, "--evaluation", "current")
    from collapsebench import runner

    calls = {"n": 0}
    real = runner.dense_row

    def interrupt_in_third(cells, n):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(cells, n)

    runner.dense_row = interrupt_in_third
    try:
        code, _, _ = cli("run", "--stream", "permuted-mnist", "--scenario", "domain", "--data-root", mnist_root,
                         "--stream-option", "n_experiences=4", "--model-option", "widths=[16,8]", "--probe-size", "8",
                         "--epochs", "2", "--batch-size", "7", "--seed", "3", "--evaluation", "current",
                         "--out", tmp_path / "cut")
    finally:
        runner.dense_row = real
    assert code != 0
    code, _, err = cli("run", "--resume", tmp_path / "cut")
    assert code == 0, err
    resumed = json.loads((tmp_path / "cut" / "results.json").read_text())
    assert resumed["accuracy_matrix"] == whole["accuracy_matrix"]
    assert resumed["online_accuracy"] == whole["online_accuracy"]


# --- each shortcut, and where it steps aside ------------------------------------------------------


def template(model, plugins=()):
    from avalanche.training.plugins import EvaluationPlugin
    from avalanche.training.templates import SupervisedTemplate

    from collapsebench.dispatch import with_lean_dispatch

    return with_lean_dispatch(SupervisedTemplate)(
        model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.1), criterion=torch.nn.CrossEntropyLoss(),
        train_mb_size=4, eval_mb_size=4, device="cpu", plugins=list(plugins), evaluator=EvaluationPlugin(loggers=[]))


def tiny_experience():
    from torch.utils.data import TensorDataset

    from collapsebench_plugins.streams import tensors

    x, y = torch.randn(10, 3), torch.arange(10) % 2
    data = tensors.view_dataset(TensorDataset(x, y), y)
    return tensors.assemble([data], [data]).test_stream


class Flagged(torch.nn.Module):
    """A module whose train() counts its calls: its own override must run, not the shortcut."""

    calls = 0

    def __init__(self):
        super().__init__()
        self.inner = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Dropout(0.5), torch.nn.Linear(4, 2))

    def forward(self, x):
        return self.inner(x)

    def train(self, mode=True):
        type(self).calls += 1
        return super().train(mode)


def modes(model):
    return {name: m.training for name, m in model.named_modules()}


def test_training_modes_come_back_as_they_were(mnist_root):
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Dropout(0.5), torch.nn.Sequential(torch.nn.Linear(4, 2)))
    model.train()
    model[1].eval()  # a mix: Avalanche restores each module's own mode
    before = modes(model)
    strategy = template(model)
    strategy.eval(tiny_experience())
    assert modes(model) == before and not model[1].training and model[2].training


def test_a_module_with_its_own_train_gets_avalanches_restore():
    model = Flagged()
    model.train()
    strategy = template(model)
    Flagged.calls = 0
    strategy.eval(tiny_experience())
    assert Flagged.calls >= 2  # model.eval(), then Avalanche's restore called it again
    assert all(modes(model).values())


def test_the_move_to_the_device_is_skipped_only_when_it_would_move_nothing():
    linear = torch.nn.Linear(3, 2)
    assert leaneval._placed_on(linear, "cpu")
    assert not leaneval._placed_on(linear, "meta")
    rnn = torch.nn.LSTM(3, 2)  # its _apply re-flattens its weights: never skipped
    assert not leaneval._placed_on(rnn, "cpu")

    class OwnTo(torch.nn.Linear):
        def to(self, *args, **kwargs):
            return super().to(*args, **kwargs)

    assert not leaneval._placed_on(OwnTo(3, 2), "cpu")


def test_avalanches_loader_is_built_only_when_used():
    built = []
    loader = fastdata.DeferredLoader(lambda: built.append(1) or [[1], [2]])
    assert not built
    assert list(loader) == [[1], [2]] and len(loader) == 2 and built == [1]


def test_without_tensor_batches_the_template_builds_avalanches_loader_itself():
    from avalanche.core import SupervisedPlugin

    seen = []

    class Reads(SupervisedPlugin):
        def before_eval_exp(self, strategy, **kwargs):
            seen.append(type(strategy.dataloader).__name__)

    strategy = template(torch.nn.Linear(3, 2), plugins=[Reads()])
    strategy.eval(tiny_experience())
    assert seen and "DeferredLoader" not in seen


def test_data_that_cannot_be_gathered_reaches_the_other_plugins_as_avalanches_loader(monkeypatch):
    from avalanche.core import SupervisedPlugin

    seen = []

    class Reads(SupervisedPlugin):
        def before_eval_exp(self, strategy, **kwargs):
            seen.append(type(strategy.dataloader).__name__)

    monkeypatch.setattr(fastdata, "gather_onto", lambda dataset, device: None)
    strategy = template(torch.nn.Linear(3, 2), plugins=[fastdata.TensorBatchesPlugin(), Reads()])
    strategy.eval(tiny_experience())
    assert seen and "DeferredLoader" not in seen and "TensorBatches" not in seen


def _count_avalanche_train_loaders(monkeypatch) -> list:
    from avalanche.training.templates.base_sgd import BaseSGDTemplate

    built, original = [], BaseSGDTemplate.make_train_dataloader

    def counted(self, **kwargs):
        original(self, **kwargs)
        built.append(type(self.dataloader).__name__)

    # Patched on Avalanche's class: the lean template still sees Avalanche's own method.
    monkeypatch.setattr(BaseSGDTemplate, "make_train_dataloader", counted)
    return built


def tiny_train_stream():
    from torch.utils.data import TensorDataset

    from collapsebench_plugins.streams import tensors

    x, y = torch.randn(10, 3), torch.arange(10) % 2
    data = tensors.view_dataset(TensorDataset(x, y), y)
    return tensors.assemble([data, data], [data, data]).train_stream


def test_avalanches_training_loader_is_not_built_when_tensor_batches_replace_it(monkeypatch):
    from avalanche.training.plugins import ReplayPlugin

    built = _count_avalanche_train_loaders(monkeypatch)
    strategy = template(torch.nn.Linear(3, 2), plugins=[fastdata.TensorBatchesPlugin()])
    for experience in tiny_train_stream():
        strategy.train(experience)
    assert built == []
    # Replay brings its own loader from the second experience on: Avalanche's is still not needed.
    strategy = template(torch.nn.Linear(3, 2), plugins=[fastdata.TensorBatchesPlugin(), ReplayPlugin(mem_size=4)])
    for experience in tiny_train_stream():
        strategy.train(experience)
    assert built == []


def test_avalanches_training_loader_is_built_where_it_is_used(monkeypatch):
    from avalanche.core import SupervisedPlugin

    seen = []

    class Reads(SupervisedPlugin):
        def before_training_epoch(self, strategy, **kwargs):
            seen.append(type(strategy.dataloader).__name__)

    built = _count_avalanche_train_loaders(monkeypatch)
    strategy = template(torch.nn.Linear(3, 2), plugins=[Reads()])  # no TensorBatchesPlugin: built at once
    strategy.train(tiny_train_stream()[0])
    assert built == ["TaskBalancedDataLoader"] and seen == ["TaskBalancedDataLoader"]

    # Data that cannot be gathered: the tensor batches fall back to Avalanche's loader, built
    # then from the experience's dataset, and training iterates it.
    del built[:], seen[:]
    monkeypatch.setattr(fastdata, "gather_onto", lambda dataset, device: None)
    strategy = template(torch.nn.Linear(3, 2), plugins=[fastdata.TensorBatchesPlugin(), Reads()])
    experience = tiny_train_stream()[1]
    strategy.train(experience)
    assert built == ["TaskBalancedDataLoader"] and seen == ["PendingTensorBatches"]
    assert strategy.clock.train_exp_iterations == 3  # 10 samples, minibatches of 4
