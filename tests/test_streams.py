"""The data-set streams, each run on tiny files this module writes in the real on-disk format.

Every image written here encodes where it came from (its class, its index) in its pixels, so a
test can check from a loaded tensor alone which source image ended up in which experience.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from collapsebench.errors import CollapsebenchError
from collapsebench.records import StreamContext
from collapsebench_plugins.streams import catalog, cifar, datafiles, imagenet32, mnist, random_labels, tensors

# The Avalanche strategies here run without loggers on purpose.
pytestmark = pytest.mark.filterwarnings("ignore:No loggers specified")


def build(name: str, root: Path, scenario: str | None = None, seed: int = 0, download: bool = False, **options):
    record = {r.name: r for r in catalog.STREAMS}[name]
    context = StreamContext(seed=seed, scenario=scenario or record.default_scenario, data_root=root, download=download)
    return record.factory(context, **record.resolve_options(options))


def all_samples(dataset):
    """Every (x, y, t) of an Avalanche dataset, stacked."""
    xs, ys, ts = zip(*(dataset[i][:3] for i in range(len(dataset))))
    return torch.stack([torch.as_tensor(x) for x in xs]), torch.tensor([int(y) for y in ys]), torch.tensor([int(t) for t in ts])


# --- writers of the real formats --------------------------------------------------------------


def write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def mnist_images(labels: np.ndarray, offset: int) -> np.ndarray:
    """Images whose pixel (0, 0) is the label and pixel (0, 1) the image's index (+ offset)."""
    images = np.zeros((len(labels), 28, 28), dtype=np.uint8)
    images[:, 0, 0] = labels
    images[:, 0, 1] = np.arange(len(labels)) + offset
    images[:, 5:9, 5:9] = 200  # something for a permutation to move around
    return images


@pytest.fixture
def mnist_root(tmp_path) -> Path:
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    train_y = np.repeat(np.arange(10), 6)  # 6 per digit
    test_y = np.tile(np.arange(10), 3)  # 3 per digit
    write_idx(raw / "train-images-idx3-ubyte", mnist_images(train_y, 0))
    write_idx(raw / "train-labels-idx1-ubyte", train_y)
    write_idx(raw / "t10k-images-idx3-ubyte", mnist_images(test_y, 100))
    write_idx(raw / "t10k-labels-idx1-ubyte", test_y)
    return tmp_path


def pixel(x: torch.Tensor, row: int, col: int, channel: int = 0, mean=mnist.MEAN, std=mnist.STD) -> torch.Tensor:
    """Undo the loader's standardization of one pixel: back to the 0..255 value written."""
    return torch.round((x[:, channel, row, col] * std + mean) * 255).long()


def cifar_rows(fine: np.ndarray, offset: int) -> np.ndarray:
    """Flattened CIFAR rows: red plane pixel 0 is the class, green plane pixel 0 the index."""
    rows = np.full((len(fine), 3072), 7, dtype=np.uint8)
    rows[:, 0] = fine
    rows[:, 1024] = np.arange(len(fine)) + offset
    return rows


def write_pickle(path: Path, entries: dict) -> None:
    # Python 2 wrote these files: bytes keys; protocol 2 is what the originals use.
    with path.open("wb") as handle:
        pickle.dump({k.encode(): v for k, v in entries.items()}, handle, protocol=2)


@pytest.fixture
def cifar10_root(tmp_path) -> Path:
    folder = tmp_path / cifar.CIFAR10_FOLDER
    folder.mkdir()
    for batch in range(1, 6):
        labels = np.arange(10)
        write_pickle(folder / f"data_batch_{batch}", {"data": cifar_rows(labels, 10 * batch), "labels": labels.tolist()})
    labels = np.tile(np.arange(10), 2)
    write_pickle(folder / "test_batch", {"data": cifar_rows(labels, 200), "labels": labels.tolist()})
    return tmp_path


#: A superclass map that is not fine // 5, so that a loader assuming it would fail.
SUPERCLASS = np.random.default_rng(7).permutation(100) // 5


@pytest.fixture
def cifar100_root(tmp_path) -> Path:
    folder = tmp_path / cifar.CIFAR100_FOLDER
    folder.mkdir()
    for name, copies, offset in (("train", 2, 0), ("test", 1, 0)):
        fine = np.tile(np.arange(100), copies)
        write_pickle(
            folder / name,
            {"data": cifar_rows(fine, offset), "fine_labels": fine.tolist(), "coarse_labels": SUPERCLASS[fine].tolist()},
        )
    return tmp_path


def imagenet_rows(labels: np.ndarray, batch: int) -> np.ndarray:
    """ImageNet32 rows: red pixel 0 is the 1-based class, red pixel 1 the batch, pixel 2 the row."""
    rows = np.zeros((len(labels), 3072), dtype=np.uint8)
    rows[:, 0] = labels
    rows[:, 1] = batch
    rows[:, 2] = np.arange(len(labels))
    return rows


@pytest.fixture
def imagenet_root(tmp_path) -> Path:
    folder = tmp_path / imagenet32.FOLDER
    folder.mkdir()
    for batch in range(1, 11):
        labels = np.tile(np.arange(1, 7), 3)  # classes 1..6, 3 images each per batch
        np.savez(folder / f"train_data_batch_{batch}.npz", data=imagenet_rows(labels, batch), labels=labels.tolist())
    labels = np.repeat(np.arange(1, 7), 2)
    np.savez(folder / "val_data.npz", data=imagenet_rows(labels, 99), labels=labels.tolist())
    return tmp_path


def imagenet_pixel(x: torch.Tensor, position: int) -> torch.Tensor:
    value = (x[:, 0].flatten(1)[:, position] * imagenet32.STD[0] + imagenet32.MEAN[0]) * 255
    return torch.round(value).long()


# --- split-mnist ------------------------------------------------------------------------------


def test_idx_reader_reads_what_was_written_and_rejects_garbage(tmp_path):
    array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / "a", array)
    assert np.array_equal(mnist.read_idx(tmp_path / "a"), array)
    (tmp_path / "b").write_bytes(b"\x08\x08\x08\x01" + b"\x00" * 8)
    with pytest.raises(CollapsebenchError, match="not an IDX file"):
        mnist.read_idx(tmp_path / "b")
    (tmp_path / "c").write_bytes((tmp_path / "a").read_bytes()[:-3])
    with pytest.raises(CollapsebenchError, match="truncated"):
        mnist.read_idx(tmp_path / "c")


def test_split_mnist_class_incremental(mnist_root):
    stream = build("split-mnist", mnist_root, class_order=[3, 1, 4, 0, 5, 9, 2, 6, 8, 7])
    assert stream.scenario == "class" and stream.n_classes == 10 and stream.input_shape == (1, 28, 28)
    expected = [[1, 3], [0, 4], [5, 9], [2, 6], [7, 8]]
    for side, per_class in ((stream.benchmark.train_stream, 6), (stream.benchmark.test_stream, 3)):
        assert len(side) == 5
        for experience, classes in zip(side, expected):
            x, y, t = all_samples(experience.dataset)
            assert sorted(set(y.tolist())) == classes == experience.classes_in_this_experience
            assert len(y) == 2 * per_class
            assert t.tolist() == [0] * len(t) and experience.task_label == 0
            # the label travels with its own image, standardized as documented
            assert torch.equal(pixel(x, 0, 0), y)
            assert torch.allclose(x[:, 0, 5, 5], torch.full((len(x),), (200 / 255 - mnist.MEAN) / mnist.STD))
    # each test image appears once, in its digit's experience
    indices = torch.cat([pixel(all_samples(e.dataset)[0], 0, 1) for e in stream.benchmark.test_stream])
    assert sorted(indices.tolist()) == list(range(100, 130))


def test_split_mnist_class_order_follows_its_seed(mnist_root):
    def groups(**options):
        return [e.classes_in_this_experience for e in build("split-mnist", mnist_root, **options).benchmark.train_stream]

    assert groups(class_order_seed=5) == groups(class_order_seed=5) == groups(seed=5)
    assert groups(class_order_seed=5) != groups(class_order_seed=6)
    assert sorted(c for g in groups(seed=3) for c in g) == list(range(10))


def test_split_mnist_task_incremental_numbers_classes_from_zero(mnist_root):
    stream = build("split-mnist", mnist_root, scenario="task", class_order=list(range(10)))
    assert stream.scenario == "task"
    for index, experience in enumerate(stream.benchmark.train_stream):
        x, y, t = all_samples(experience.dataset)
        assert experience.task_label == index and set(t.tolist()) == {index}
        # digit 2*index is label 0, digit 2*index+1 is label 1
        assert torch.equal(pixel(x, 0, 0), 2 * index + y)
    assert [e.task_label for e in stream.benchmark.test_stream] == list(range(5))


def test_split_mnist_rejects_uneven_or_bad_splits(mnist_root):
    with pytest.raises(CollapsebenchError, match="one of 1, 2, 5, 10"):
        build("split-mnist", mnist_root, n_experiences=3)
    with pytest.raises(CollapsebenchError, match="exactly once"):
        build("split-mnist", mnist_root, class_order=[0, 0, 1, 2, 3, 4, 5, 6, 7, 8])
    with pytest.raises(CollapsebenchError, match="supports the scenarios class, task"):
        build("split-mnist", mnist_root, scenario="domain")


def test_subsets_are_class_balanced_seeded_and_fingerprinted(mnist_root):
    full = build("split-mnist", mnist_root, class_order=list(range(10)))
    small = build("split-mnist", mnist_root, class_order=list(range(10)), train_subset=4, test_subset=2)
    again = build("split-mnist", mnist_root, class_order=list(range(10)), train_subset=4, test_subset=2, seed=9)
    for experience, repeat in zip(small.benchmark.train_stream, again.benchmark.train_stream):
        x, y, _ = all_samples(experience.dataset)
        assert torch.bincount(y, minlength=10)[sorted(set(y.tolist()))].tolist() == [2, 2]
        # the subset is part of the data, not of the run: the same for every seed
        assert torch.equal(pixel(x, 0, 1), pixel(all_samples(repeat.dataset)[0], 0, 1))
    assert [len(e.dataset) for e in small.benchmark.test_stream] == [2] * 5
    assert small.fingerprint == again.fingerprint != full.fingerprint


def test_balanced_subset_spreads_over_classes_and_keeps_order():
    labels = torch.tensor([0] * 10 + [1] * 3 + [2] * 7)
    for seed in range(3):
        chosen = tensors.balanced_subset(labels, 11, torch.Generator().manual_seed(seed))
        # three of every class, then the two classes that have more get one more each
        assert torch.bincount(labels[chosen], minlength=3).tolist() == [4, 3, 4]
        assert torch.equal(chosen, chosen.sort().values) and len(set(chosen.tolist())) == 11
    draws = {tuple(tensors.balanced_subset(labels, 11, torch.Generator().manual_seed(s)).tolist()) for s in range(3)}
    assert len(draws) > 1  # which samples of a class are kept is random
    assert torch.equal(tensors.balanced_subset(labels, 0, torch.Generator()), torch.arange(20))


def test_missing_data_names_the_files_the_folder_and_the_remedy(tmp_path):
    with pytest.raises(CollapsebenchError) as caught:
        build("split-mnist", tmp_path / "empty")
    message = str(caught.value)
    for expected in (*mnist.FILES.values(), str(tmp_path / "empty" / "MNIST" / "raw"), "--download", "no such folder"):
        assert expected in message
    partial = tmp_path / "partial" / "MNIST" / "raw"
    partial.mkdir(parents=True)
    write_idx(partial / "train-labels-idx1-ubyte", np.zeros(3))
    message = str(pytest.raises(CollapsebenchError, build, "split-mnist", tmp_path / "partial").value)
    assert "train-images-idx3-ubyte" in message and "train-labels-idx1-ubyte" not in message
    for name, expected in (("split-cifar10", "cifar-10-batches-py"), ("cifar100-shift", "cifar-100-python")):
        message = str(pytest.raises(CollapsebenchError, build, name, tmp_path).value)
        assert expected in message and "--download" in message


def test_download_asks_torchvision_only_when_allowed(tmp_path, monkeypatch, mnist_root):
    import torchvision

    calls = []

    class FakeMNIST:
        def __init__(self, root, train, download):
            calls.append((root, train, download))
            source = mnist_root / "MNIST" / "raw"
            target = Path(root) / "MNIST" / "raw"
            target.mkdir(parents=True, exist_ok=True)
            for name in mnist.FILES.values():
                (target / name).write_bytes((source / name).read_bytes())

    monkeypatch.setattr(torchvision.datasets, "MNIST", FakeMNIST)
    with pytest.raises(CollapsebenchError):
        build("split-mnist", tmp_path / "fresh")
    assert calls == []
    stream = build("split-mnist", tmp_path / "fresh", download=True)
    assert [c[2] for c in calls] == [True, True] and len(stream.benchmark.train_stream) == 5
    build("split-mnist", tmp_path / "fresh", download=True)  # files present: no second download
    assert len(calls) == 2


def test_task_incremental_stream_drives_avalanches_multi_head_model(mnist_root):
    from avalanche.models import MTSimpleMLP
    from avalanche.training import Naive
    from avalanche.training.plugins import EvaluationPlugin

    stream = build("split-mnist", mnist_root, scenario="task")
    model = MTSimpleMLP(hidden_size=8)
    strategy = Naive(
        model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.01), train_mb_size=4, train_epochs=1,
        evaluator=EvaluationPlugin(loggers=[]),
    )
    for experience in stream.benchmark.train_stream[:2]:
        strategy.train(experience)  # adds a head per task label, masks by classes_in_this_experience
    assert sorted(model.classifier.classifiers.keys()) == ["0", "1"]
    assert model.classifier.active_units_T1.tolist() == [1, 1]


# --- permuted-mnist ---------------------------------------------------------------------------


def test_permuted_mnist_permutes_pixels_per_experience(mnist_root):
    stream = build("permuted-mnist", mnist_root, n_experiences=3, permutation_seed=11)
    assert stream.scenario == "domain" and stream.n_classes == 10
    original = mnist.load_mnist(mnist_root)
    permutations = mnist.permutations(3, 11)
    for experience, permutation in zip(stream.benchmark.train_stream, permutations):
        x, y, t = all_samples(experience.dataset)
        assert torch.equal(y, original.train_y) and set(t.tolist()) == {0}
        assert torch.equal(x.flatten(1), original.train_x.flatten(1)[:, permutation])
        assert experience.classes_in_this_experience == list(range(10))
    test_x, _, _ = all_samples(stream.benchmark.test_stream[2].dataset)
    assert torch.equal(test_x.flatten(1), original.test_x.flatten(1)[:, permutations[2]])
    # every experience a different permutation, each a true permutation
    assert all(sorted(p.tolist()) == list(range(784)) for p in permutations)
    assert not torch.equal(permutations[0], permutations[1]) and not torch.equal(permutations[1], permutations[2])


def test_permuted_mnist_same_seed_same_permutations(mnist_root):
    def first_images(**options):
        stream = build("permuted-mnist", mnist_root, n_experiences=2, **options)
        return [all_samples(e.dataset)[0] for e in stream.benchmark.train_stream]

    a, b, c = first_images(seed=4), first_images(permutation_seed=4), first_images(seed=5)
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    assert not torch.equal(a[0], c[0])


def test_permuted_mnist_examples_per_experience(mnist_root):
    stream = build("permuted-mnist", mnist_root, n_experiences=4, train_subset=20, test_subset=10)
    sizes = [(len(tr.dataset), len(te.dataset)) for tr, te in zip(stream.benchmark.train_stream, stream.benchmark.test_stream)]
    assert sizes == [(20, 10)] * 4
    assert torch.bincount(all_samples(stream.benchmark.train_stream[0].dataset)[1]).tolist() == [2] * 10


# --- CIFAR ------------------------------------------------------------------------------------


def cifar_class(x: torch.Tensor, stats=cifar.CIFAR10_STATS) -> torch.Tensor:
    return pixel(x, 0, 0, 0, stats[0][0], stats[1][0])


@pytest.mark.parametrize("n_experiences", [2, 5])
def test_split_cifar10(cifar10_root, n_experiences):
    stream = build("split-cifar10", cifar10_root, n_experiences=n_experiences, class_order=list(range(10)))
    assert stream.input_shape == (3, 32, 32) and stream.n_classes == 10
    size = 10 // n_experiences
    for index, (train, test) in enumerate(zip(stream.benchmark.train_stream, stream.benchmark.test_stream)):
        x, y, _ = all_samples(train.dataset)
        assert set(y.tolist()) == set(range(index * size, (index + 1) * size))
        assert len(y) == 5 * size and len(test.dataset) == 2 * size
        assert torch.equal(cifar_class(x), y)
        # green plane, pixel 0: the image index 10*batch + class; unrelated planes get their own channel stats
        green = pixel(x, 0, 0, 1, cifar.CIFAR10_STATS[0][1], cifar.CIFAR10_STATS[1][1])
        assert sorted(green.tolist()) == sorted(10 * b + c for b in range(1, 6) for c in set(y.tolist()))
        blue = x[:, 2, 5, 5]
        assert torch.allclose(blue, torch.full_like(blue, (7 / 255 - cifar.CIFAR10_STATS[0][2]) / cifar.CIFAR10_STATS[1][2]))


@pytest.mark.parametrize("n_experiences", [10, 20])
def test_split_cifar100(cifar100_root, n_experiences):
    stream = build("split-cifar100", cifar100_root, n_experiences=n_experiences, scenario="task")
    assert len(stream.benchmark.train_stream) == n_experiences and stream.n_classes == 100
    seen = []
    for index, experience in enumerate(stream.benchmark.train_stream):
        x, y, t = all_samples(experience.dataset)
        fine = cifar_class(x, cifar.CIFAR100_STATS)
        assert len(set(fine.tolist())) == 100 // n_experiences and set(t.tolist()) == {index}
        assert set(y.tolist()) == set(range(100 // n_experiences))  # task heads count from zero
        seen += sorted(set(fine.tolist()))
    assert sorted(seen) == list(range(100))


def test_cifar100_shift_labels_superclasses_with_new_subclasses_each_experience(cifar100_root):
    stream = build("cifar100-shift", cifar100_root, n_experiences=5, class_order_seed=2)
    assert stream.scenario == "domain" and stream.n_classes == 20
    used = []
    for train, test in zip(stream.benchmark.train_stream, stream.benchmark.test_stream):
        for experience, copies in ((train, 2), (test, 1)):
            x, y, t = all_samples(experience.dataset)
            fine = cifar_class(x, cifar.CIFAR100_STATS)
            assert torch.equal(y, torch.from_numpy(SUPERCLASS[fine.numpy()]))  # the file's coarse label
            assert sorted(y.tolist()) == sorted(list(range(20)) * copies)  # every superclass, one subclass each
            assert set(t.tolist()) == {0}
        assert sorted(set(fine.tolist())) == train.subclasses == test.subclasses
        used += train.subclasses
    assert sorted(used) == list(range(100))  # different subclasses in every experience
    again = build("cifar100-shift", cifar100_root, n_experiences=5, class_order_seed=2)
    other = build("cifar100-shift", cifar100_root, n_experiences=5, class_order_seed=3)
    assert [e.subclasses for e in again.benchmark.train_stream] == [e.subclasses for e in stream.benchmark.train_stream]
    assert [e.subclasses for e in other.benchmark.train_stream] != [e.subclasses for e in stream.benchmark.train_stream]


def test_cifar100_shift_two_experiences_take_two_subclasses_each(cifar100_root):
    stream = build("cifar100-shift", cifar100_root, n_experiences=2, scenario="task")
    first, second = (set(e.subclasses) for e in stream.benchmark.train_stream)
    assert len(first) == len(second) == 40 and not first & second
    assert [e.task_label for e in stream.benchmark.train_stream] == [0, 1]
    with pytest.raises(CollapsebenchError, match="n_experiences.*expected at most 5, got 6"):
        build("cifar100-shift", cifar100_root, n_experiences=6)


def test_superclass_members_rejects_inconsistent_labels():
    with pytest.raises(CollapsebenchError, match="several superclasses"):
        cifar.superclass_members(torch.tensor([0, 0, 1]), torch.tensor([0, 1, 1]))


# --- continual-imagenet32 ---------------------------------------------------------------------


def test_continual_imagenet32_binary_tasks_with_head_reset(imagenet_root):
    stream = build(
        "continual-imagenet32", imagenet_root, n_experiences=5, n_classes=4, train_per_class=5, test_per_class=2, seed=1
    )
    assert stream.reset_head_each_experience is True
    assert stream.n_classes == 2 and stream.input_shape == (3, 32, 32) and stream.scenario == "domain"
    pairs = imagenet32.class_pairs(5, 4, 1)
    # two pairs per shuffle of 4 classes: the first two tasks use all four classes once
    assert sorted(pairs[0] + pairs[1]) == [0, 1, 2, 3]
    for (first, second), train, test in zip(pairs, stream.benchmark.train_stream, stream.benchmark.test_stream):
        assert train.imagenet_classes == (first + 1, second + 1)
        x, y, t = all_samples(train.dataset)
        classes = imagenet_pixel(x, 0)
        assert torch.equal(classes, torch.where(y == 0, first + 1, second + 1))
        assert y.tolist() == [0] * 5 + [1] * 5 and set(t.tolist()) == {0}
        # the first 5 images of a class in file order: batch 1 rows, then batch 2's first two
        batches = imagenet_pixel(x, 1)[:5].tolist()
        assert batches == [1, 1, 1, 2, 2]
        test_x, test_y, _ = all_samples(test.dataset)
        assert test_y.tolist() == [0, 0, 1, 1]
        # test images are the next two of each class (batch 2's third, batch 3's first): no overlap
        assert imagenet_pixel(test_x, 1)[:2].tolist() == [2, 3]
        assert torch.equal(imagenet_pixel(test_x, 0), torch.where(test_y == 0, first + 1, second + 1))


def test_continual_imagenet32_val_images_and_task_labels(imagenet_root):
    stream = build(
        "continual-imagenet32", imagenet_root, scenario="task", n_experiences=3, n_classes=6,
        train_per_class=3, test_per_class=2, test_images="val",
    )
    assert [e.task_label for e in stream.benchmark.test_stream] == [0, 1, 2]
    for experience in stream.benchmark.test_stream:
        x, _, _ = all_samples(experience.dataset)
        assert set(imagenet_pixel(x, 1).tolist()) == {99}
    for experience in stream.benchmark.train_stream:
        x, _, _ = all_samples(experience.dataset)
        assert set(imagenet_pixel(x, 1).tolist()) == {1}  # batch 1 already holds 3 of each class


def test_continual_imagenet32_missing_files_and_no_download(imagenet_root, tmp_path):
    (imagenet_root / imagenet32.FOLDER / "train_data_batch_7.npz").unlink()
    message = str(pytest.raises(CollapsebenchError, build, "continual-imagenet32", imagenet_root, n_classes=4).value)
    assert "train_data_batch_7.npz" in message and "train_data_batch_6.npz" not in message
    assert str(imagenet_root / "imagenet32") in message and "Imagenet32_train_npz.zip" in message
    message = str(pytest.raises(CollapsebenchError, build, "continual-imagenet32", tmp_path / "x", download=True).value)
    assert "cannot be downloaded" in message


def test_continual_imagenet32_short_classes_are_reported(imagenet_root):
    with pytest.raises(CollapsebenchError, match="fewer images than needed"):
        build("continual-imagenet32", imagenet_root, n_experiences=2, n_classes=4, train_per_class=30, test_per_class=1)


# --- random-labels ----------------------------------------------------------------------------


def test_random_labels_shuffles_each_experience_and_keeps_inputs(mnist_root):
    base_options = {"class_order": list(range(10))}
    base = build("split-mnist", mnist_root, **base_options)
    shuffled = build("random-labels", mnist_root, base="split-mnist", base_options=base_options, label_seed=3)
    again = build("random-labels", mnist_root, base="split-mnist", base_options=base_options, label_seed=3)
    assert shuffled.n_classes == 10 and shuffled.input_shape == base.input_shape
    assert shuffled.fingerprint != base.fingerprint
    moved = []
    for original, relabelled, repeat, test in zip(
        base.benchmark.train_stream, shuffled.benchmark.train_stream, again.benchmark.train_stream, shuffled.benchmark.test_stream
    ):
        x, y, _ = all_samples(original.dataset)
        rx, ry, _ = all_samples(relabelled.dataset)
        assert torch.equal(x, rx)  # the same inputs in the same order
        assert sorted(ry.tolist()) == sorted(y.tolist())  # a permutation of the labels
        assert torch.equal(ry, all_samples(repeat.dataset)[1])  # the same seed, the same shuffle
        assert test.dataset is relabelled.dataset  # tested on its own memorized samples
        moved.append((ry != y).float().mean().item())
    assert min(moved) > 0  # 12 samples of two classes: some label moves in every experience


def test_random_labels_on_the_test_side_and_over_other_bases(mnist_root):
    stream = build("random-labels", mnist_root, base="permuted-mnist", base_options={"n_experiences": 2}, evaluate_on="test",
                   scenario="domain")
    assert stream.scenario == "domain" and len(stream.benchmark.test_stream) == 2
    assert len(stream.benchmark.test_stream[0].dataset) == 30
    label_orders = [all_samples(e.dataset)[1] for e in stream.benchmark.train_stream]
    assert not torch.equal(label_orders[0], label_orders[1])  # a fresh shuffle per experience
    task = build("random-labels", mnist_root, scenario="task")
    assert [e.task_label for e in task.benchmark.train_stream] == list(range(5))
    with pytest.raises(CollapsebenchError, match="Unknown stream 'split-mnst'. Did you mean 'split-mnist'"):
        build("random-labels", mnist_root, base="split-mnst")
    with pytest.raises(CollapsebenchError, match="itself"):
        build("random-labels", mnist_root, base="random-labels")
    with pytest.raises(CollapsebenchError, match="supports the scenarios domain"):
        build("random-labels", mnist_root, base="permuted-mnist")  # random-labels' default scenario is class


def test_random_labels_uses_the_hosts_builder_when_given(mnist_root):
    calls = []

    def build_stream(name, context, options):
        calls.append((name, options))
        return build(name, mnist_root, **options)

    context = StreamContext(seed=0, scenario="class", data_root=mnist_root, build_stream=build_stream)
    random_labels.build_random_labels(context, "split-mnist", {"n_experiences": 2}, None, "train")
    assert calls == [("split-mnist", {"n_experiences": 2})]


# --- plumbing ---------------------------------------------------------------------------------


def test_fingerprint_changes_with_file_contents(mnist_root):
    before = build("split-mnist", mnist_root).fingerprint
    assert before.startswith("split-mnist-") and before == build("split-mnist", mnist_root, seed=3).fingerprint
    labels = mnist_root / "MNIST" / "raw" / "t10k-labels-idx1-ubyte"
    data = bytearray(labels.read_bytes())
    data[-1] = (data[-1] + 1) % 10
    labels.write_bytes(bytes(data))
    later = labels.stat().st_mtime_ns + 10**9  # a later edit, even where timestamps are coarse
    os.utime(labels, ns=(later, later))
    assert build("split-mnist", mnist_root).fingerprint != before


def test_file_digest_is_the_sha256_of_the_contents(tmp_path):
    import hashlib

    path = tmp_path / "f"
    path.write_bytes(b"collapse")
    assert datafiles.file_digest(path) == hashlib.sha256(b"collapse").hexdigest()


def test_listing_streams_imports_neither_torch_nor_avalanche():
    code = (
        "import sys; from collapsebench_plugins.streams import collapsebench_streams; "
        "names = [s.name for s in collapsebench_streams()]; "
        "print(names, 'torch' in sys.modules, 'avalanche' in sys.modules)"
    )
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    for name in ("split-digits", "split-mnist", "permuted-mnist", "split-cifar10", "split-cifar100", "cifar100-shift",
                 "continual-imagenet32", "random-labels"):
        assert f"'{name}'" in output
    assert output.strip().endswith("False False")


# --- the real MNIST sample --------------------------------------------------------------------


def test_split_mnist_on_the_shared_sample_trains_with_avalanche(shared_mnist_root):
    from avalanche.training import Naive
    from avalanche.training.plugins import EvaluationPlugin

    stream = build("split-mnist", shared_mnist_root, class_order=list(range(10)))
    train, test = stream.benchmark.train_stream, stream.benchmark.test_stream
    assert sum(len(e.dataset) for e in train) == 8000 and sum(len(e.dataset) for e in test) == 2000
    assert "not comparable with full-MNIST" in stream.description
    assert stream.fingerprint != build("split-mnist", shared_mnist_root, train_subset=100).fingerprint
    assert [e.classes_in_this_experience for e in train] == [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]]
    assert train[2].previous_classes == [0, 1, 2, 3] and train[2].future_classes == [6, 7, 8, 9]

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10))
    strategy = Naive(
        model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.05), train_mb_size=32, train_epochs=1,
        evaluator=EvaluationPlugin(loggers=[]),
    )
    strategy.train(train[0])
    x, y, _ = all_samples(test[0].dataset)
    with torch.no_grad():
        accuracy = (model(x).argmax(1) == y).float().mean().item()
    assert accuracy > 0.95  # 0 against 1 is easy; a wrong pairing of images and labels is not


@pytest.mark.parametrize("which, torchvision_class", [("cifar10", "CIFAR10"), ("cifar100", "CIFAR100")])
def test_cifar_download_asks_torchvision_only_when_allowed(tmp_path, monkeypatch, which, torchvision_class):
    import torchvision

    calls = []
    monkeypatch.setattr(torchvision.datasets, torchvision_class,
                        lambda root, train, download: calls.append((root, train, download)))
    loader = cifar.load_cifar10 if which == "cifar10" else cifar.load_cifar100
    with pytest.raises(CollapsebenchError, match=f"{which.replace('cifar', 'cifar-')}-python.tar.gz"):
        loader(tmp_path)
    assert calls == []
    with pytest.raises(CollapsebenchError):  # the fake fetched nothing: the files are still missing
        loader(tmp_path, download=True)
    assert calls == [(str(tmp_path), True, True)]
