"""The bulk gather of fixed-sample streams (collapsebench.fastdata): one indexing operation per
experience instead of one Avalanche __getitem__ per sample, giving exactly the same tensors and
therefore the same results; and a 2,000-task continual-imagenet32 stream on tiny files in the
real format, built and run by the runner."""

from __future__ import annotations

import json
import resource
import textwrap
import time

import pytest
import torch

from collapsebench import fastdata
from collapsebench_plugins.streams import catalog, imagenet32
from test_streams import build, imagenet_root, mnist_root  # noqa: F401  (fixtures)

pytestmark = pytest.mark.filterwarnings("ignore:No loggers specified")


def one_by_one(dataset):
    samples = [dataset[i] for i in range(len(dataset))]
    return (torch.stack([s[0] for s in samples]), torch.as_tensor([int(s[1]) for s in samples]),
            torch.as_tensor([int(s[2]) for s in samples]))


def assert_bulk_equals_one_by_one(dataset):
    bulk = fastdata._bulk_stack(dataset)
    assert bulk is not None, "the bulk path was not taken"
    for got, expected in zip(bulk, one_by_one(dataset)):
        assert got.dtype == expected.dtype and torch.equal(got, expected)


def experiences(stream):
    for train, test in zip(stream.benchmark.train_stream, stream.benchmark.test_stream):
        yield train.dataset.train()
        yield test.dataset.eval()


def test_permuted_mnist_gathers_in_bulk_exactly(mnist_root):
    stream = build("permuted-mnist", mnist_root, n_experiences=3, train_subset=20)
    for dataset in experiences(stream):
        assert_bulk_equals_one_by_one(dataset)


def test_a_dataset_of_several_task_labels_keeps_avalanches_loader():
    from avalanche.benchmarks.utils import _make_taskaware_classification_dataset
    from torch.utils.data import TensorDataset

    inputs, labels = torch.arange(12.0).view(4, 3), torch.tensor([0, 1, 0, 1])

    def dataset(task_labels):
        return _make_taskaware_classification_dataset(TensorDataset(inputs, labels), targets=labels.tolist(),
                                                      task_labels=task_labels)

    for single, expected in (([2, 2, 2, 2], [2, 2, 2, 2]), (0, [0, 0, 0, 0])):
        gathered = fastdata.gather_onto(dataset(single), "cpu")
        assert gathered is not None and torch.equal(gathered[0], inputs) and gathered[2].tolist() == expected
    for mixed in ([0, 0, 0, 1], [1, 0, 0, 0], [0, 1, 0, 1]):
        assert fastdata.gather_onto(dataset(mixed), "cpu") is None, mixed


def test_continual_imagenet32_gathers_in_bulk_exactly(imagenet_root):
    stream = build("continual-imagenet32", imagenet_root, scenario="task", n_experiences=4, n_classes=6,
                   train_per_class=5, test_per_class=2, test_images="val")
    for dataset in experiences(stream):
        assert_bulk_equals_one_by_one(dataset)


def test_random_labels_gathers_through_its_base(mnist_root):
    stream = build("random-labels", mnist_root, scenario="domain", base="permuted-mnist",
                   base_options={"n_experiences": 2}, evaluate_on="test")
    for dataset in experiences(stream):
        assert_bulk_equals_one_by_one(dataset)


@pytest.mark.parametrize("scenario", ["class", "task"])
def test_split_mnist_gathers_its_tensor_datasets_in_bulk_exactly(mnist_root, scenario):
    """split-mnist's experiences are Avalanche tensor datasets: no hook needed."""
    for dataset in experiences(build("split-mnist", mnist_root, scenario=scenario)):
        assert_bulk_equals_one_by_one(dataset)


def test_a_tensor_dataset_whose_getitem_differs_is_read_sample_by_sample():
    from torch.utils.data import TensorDataset

    from collapsebench_plugins.streams.tensors import view_dataset

    class Doubled(TensorDataset):
        def __getitem__(self, index):
            x, y = super().__getitem__(index)
            return x * 2, y

    x, y = torch.arange(12.0).view(6, 2), torch.tensor([0, 1, 0, 1, 0, 1])
    assert fastdata._bulk_stack(view_dataset(TensorDataset(x, y), y)) is not None
    doubled = view_dataset(Doubled(x, y), y)
    assert fastdata._bulk_stack(doubled) is None
    assert torch.equal(fastdata.gather(doubled)[0], x * 2)


def test_subsets_and_concatenations_follow_avalanches_indexing(mnist_root):
    stream = build("permuted-mnist", mnist_root, n_experiences=2)
    first, second = (e.dataset.train() for e in stream.benchmark.train_stream)
    mixed = first.subset([5, 0, 3]).concat(second.subset([7, 1])).subset([4, 0, 2, 3])
    assert_bulk_equals_one_by_one(mixed)


def test_a_transform_or_a_disagreeing_hook_falls_back_to_reading_samples(mnist_root):
    stream = build("permuted-mnist", mnist_root, n_experiences=1)
    dataset = stream.benchmark.train_stream[0].dataset
    transformed = dataset.replace_current_transform_group(lambda x: x * 2)
    assert fastdata._bulk_stack(transformed.train()) is None
    assert torch.equal(fastdata.gather(transformed.train())[0], one_by_one(transformed.train())[0])

    leaf = dataset._flat_data._datasets[0]
    honest = leaf.collapsebench_rows
    leaf.collapsebench_rows = lambda indices: (honest(indices)[0] + 1, honest(indices)[1])
    try:
        assert fastdata._bulk_stack(dataset.train()) is None  # the spot check caught it
    finally:
        del leaf.collapsebench_rows


def results_of(cli, out, *args):
    code, _, err = cli("run", *args, "--out", out)
    assert code == 0, err
    return json.loads((out / "results.json").read_text())


def test_a_run_is_identical_with_and_without_the_bulk_path(cli, mnist_root, tmp_path, monkeypatch):
    args = ["--stream", "permuted-mnist", "--scenario", "domain", "--data-root", mnist_root,
            "--stream-option", "n_experiences=3", "--model-option", "widths=[16]", "--probe-size", "8",
            "--epochs", "2", "--batch-size", "7", "--evaluators", "weights", "--evaluation", "full", "--seed", "4"]
    taken = []
    bulk = fastdata._bulk_stack
    monkeypatch.setattr(fastdata, "_bulk_stack", lambda d: taken.append(bulk(d)) or taken[-1])
    fast = results_of(cli, tmp_path / "bulk", *args)
    assert taken and all(t is not None for t in taken)
    monkeypatch.setattr(fastdata, "_bulk_stack", lambda d: None)
    slow = results_of(cli, tmp_path / "one-by-one", *args)
    assert fast["accuracy_matrix"] == slow["accuracy_matrix"]
    assert fast["online_accuracy"] == slow["online_accuracy"]
    assert fast["metrics"] == slow["metrics"]


# --- a 2,000-task continual-imagenet32 stream on tiny files in the real format -------------------

STOPS_AFTER_THREE = textwrap.dedent('''
    from collapsebench import Strategy, StrategyParts, hookimpl


    def _build(context):
        from avalanche.core import SupervisedPlugin

        class StopAfterThree(SupervisedPlugin):
            def before_training_exp(self, strategy, **kwargs):
                if strategy.experience.current_experience == 3:
                    raise KeyboardInterrupt  # as Ctrl-C would: the runner writes a partial result

        return StrategyParts(plugins=[StopAfterThree()])


    @hookimpl
    def collapsebench_strategies():
        return [Strategy("stop_after_three", "interrupts the run before experience 4", _build)]
''')


def test_a_2000_task_continual_imagenet32_stream_builds_fast_in_flat_memory(imagenet_root):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    stream = build("continual-imagenet32", imagenet_root, n_experiences=2000, n_classes=6,
                   train_per_class=5, test_per_class=2)
    seconds = time.perf_counter() - started
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert len(stream.benchmark.train_stream) == len(stream.benchmark.test_stream) == 2000
    assert seconds < 20, f"building 2,000 tasks took {seconds:.1f} s"
    assert grown_mb < 300, f"building 2,000 tasks grew the peak memory by {grown_mb:.0f} MB"
    # Every task is a view of one uint8 store of the used classes' images, not a copy.
    stores = {e.dataset._flat_data._datasets[0].storage.data_ptr() for e in stream.benchmark.train_stream}
    assert len(stores) == 1
    last = stream.benchmark.train_stream[1999]
    assert last.classes_in_this_experience == [0, 1]
    assert tuple(imagenet32.class_pairs(2000, 6, 0)[1999]) == tuple(c - 1 for c in last.imagenet_classes)
    assert {r.name: r for r in catalog.STREAMS}["continual-imagenet32"].default_evaluation == "current"


def test_a_2000_task_continual_imagenet32_run_starts_and_measures_current(cli, imagenet_root, tmp_path):
    plugin = tmp_path / "stop_after_three.py"
    plugin.write_text(STOPS_AFTER_THREE)
    out = tmp_path / "run"
    code, stdout, err = cli("run", "--plugin", plugin, "--stream", "continual-imagenet32", "--scenario", "domain",
                            "--data-root", imagenet_root, "--stream-option", "n_experiences=2000",
                            "--stream-option", "n_classes=6", "--stream-option", "train_per_class=5",
                            "--stream-option", "test_per_class=2", "--model", "mlp", "--model-option", "widths=[8]",
                            "--strategy", "naive+stop_after_three", "--probe-size", "4", "--epochs", "1",
                            "--batch-size", "5", "--out", out)
    assert code != 2, err
    result = json.loads((out / "results.json").read_text())
    assert result["status"] == "partial"
    assert result["evaluation"]["protocol"] == "current"  # the stream's default
    rows = result["accuracy_matrix"]
    assert len(rows) == 3 and all(len(row) == 2000 for row in rows)
    assert [[j for j, v in enumerate(row) if v is not None] for row in rows] == [[0], [1], [2]]
    assert len(result["online_accuracy"]) == 3
    assert result["timing"]["build"] < 60


# --- random-labels is evaluated as its base ---------------------------------------------------

@pytest.mark.parametrize("base, base_options, expected", [
    ("continual-imagenet32", {}, "current"),
    ("permuted-mnist", {"n_experiences": 800}, "current"),
    ("permuted-mnist", {"n_experiences": 10}, "full"),
    ("permuted-mnist", {}, "full"),  # the base's own default n_experiences (10)
    ("split-mnist", {}, "full"),
    ("not-a-built-in", {}, "full"),
])
def test_random_labels_inherits_its_base_streams_default_protocol(base, base_options, expected):
    from collapsebench import protocols

    record = {r.name: r for r in catalog.STREAMS}["random-labels"]
    options = {**record.option_defaults(), "base": base, "base_options": base_options}
    assert protocols.resolve(None, record.default_evaluation, options).name == expected
    assert protocols.resolve("seen", record.default_evaluation, options).name == "seen"  # the config still wins
