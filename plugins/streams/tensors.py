"""Avalanche benchmarks built from in-memory tensors.

Every built-in stream loads its data set once, normalizes it once, and hands tensors to the
functions here. Avalanche then only indexes tensors: no per-sample decoding or transforms in
the training loop.

Two entry points:

- :func:`build_benchmark` splits whole-data-set tensors by class groups (split streams) or
  takes ready-made per-experience tensors.
- :func:`assemble` takes per-experience Avalanche datasets, for streams whose experiences are
  views that would not fit in memory if materialized (800 permutations of MNIST).

Task labels follow the scenario: experience ``i`` carries task label ``i`` in the ``task``
scenario and ``0`` otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from avalanche.benchmarks.scenarios import CLScenario, DatasetExperience
from avalanche.benchmarks.scenarios.generic_scenario import EagerCLStream
from avalanche.benchmarks.utils.classification_dataset import (
    _make_taskaware_classification_dataset,
    _make_taskaware_tensor_classification_dataset,
)
from torch.utils.data import Dataset

#: What ``build_benchmark`` accepts as one experience given by its data rather than its classes.
ExperienceTensors = tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def task_label_for(scenario: str, experience: int) -> int:
    return experience if scenario == "task" else 0


def tensor_dataset(x: torch.Tensor, y: torch.Tensor, task_label: int = 0):
    """An Avalanche classification dataset over ``(x, y)`` tensors whose samples are ``(x, y, t)``."""
    y = torch.as_tensor(y, dtype=torch.long)
    if len(x) != len(y):
        raise ValueError(f"{len(x)} inputs but {len(y)} labels")
    # Targets as Python ints: Avalanche hashes them to find an experience's classes, and
    # 0-d tensors hash by identity.
    return _make_taskaware_tensor_classification_dataset(
        x, y, targets=y.tolist(), task_labels=task_label
    )


def view_dataset(dataset: Dataset, targets: Sequence[int], task_label: int = 0):
    """An Avalanche classification dataset over any ``(x, y)`` dataset, ``targets`` its labels."""
    targets = targets.tolist() if torch.is_tensor(targets) else [int(t) for t in targets]
    return _make_taskaware_classification_dataset(dataset, targets=targets, task_labels=task_label)


def assemble(
    train: Sequence[Any],
    test: Sequence[Any],
    classes: Sequence[set[int]] | None = None,
) -> CLScenario:
    """A benchmark whose train and test experience ``i`` are ``train[i]`` and ``test[i]``.

    Both are Avalanche datasets from :func:`tensor_dataset` or :func:`view_dataset`. Sets
    the attributes Avalanche's own generators set (``classes_in_this_experience``,
    ``task_labels`` and friends), the task labels read from the datasets. ``classes[i]`` is
    experience ``i``'s set of classes when the caller knows it; otherwise it is read from the
    targets (a pass over them in Python).
    """
    if len(train) != len(test):
        raise ValueError(f"{len(train)} train experiences but {len(test)} test experiences")
    streams = [
        EagerCLStream(name, _experiences(datasets, classes))
        for name, datasets in (("train", train), ("test", test))
    ]
    return CLScenario(streams)


def _experiences(datasets: Sequence[Any], classes) -> list[DatasetExperience]:
    class_sets = [set(c) for c in classes] if classes is not None else [_classes_of(d) for d in datasets]
    everything = set().union(*class_sets) if class_sets else set()
    experiences, seen = [], set()
    for index, (dataset, classes) in enumerate(zip(datasets, class_sets)):
        experience = DatasetExperience(dataset=dataset, current_experience=index)
        task_labels = sorted(int(t) for t in dataset.targets_task_labels.uniques)
        experience.task_labels = task_labels
        if len(task_labels) == 1:
            experience.task_label = task_labels[0]
        # Sorted lists, as Avalanche's classes-timeline protocol declares: its multi-head
        # classifier indexes a tensor with classes_in_this_experience, which a set breaks.
        experience.classes_in_this_experience = sorted(classes)
        experience.previous_classes = sorted(seen)
        seen |= classes
        experience.classes_seen_so_far = sorted(seen)
        experience.future_classes = sorted(everything - seen)
        experiences.append(experience)
    return experiences


def _classes_of(dataset) -> set[int]:
    return {int(c) for c in dataset.targets.uniques}


def build_benchmark(
    train_x: torch.Tensor | None,
    train_y: torch.Tensor | None,
    test_x: torch.Tensor | None,
    test_y: torch.Tensor | None,
    experiences: Sequence[Sequence[int]] | Sequence[ExperienceTensors],
    scenario: str,
    *,
    train_subset: int = 0,
    test_subset: int = 0,
    subset_seed: int = 0,
    labels_from_zero: bool = False,
) -> CLScenario:
    """An Avalanche benchmark with train and test streams from tensors.

    ``experiences`` is either a list of class lists (experience ``i`` holds every train and
    test sample whose label is in ``experiences[i]``) or a list of
    ``((train_x, train_y), (test_x, test_y))`` tuples used as they are (then the first four
    arguments may be ``None``). ``train_subset``/``test_subset`` > 0 keep that many samples
    per experience, class-balanced, drawn with ``subset_seed``: for quick runs.
    ``labels_from_zero`` renumbers each class-list experience's classes ``0..k-1`` in the
    order listed, as task-incremental heads expect.
    """
    if not experiences:
        raise ValueError("a benchmark needs at least one experience")
    if _is_class_list(experiences[0]):
        parts = split_by_classes(train_x, train_y, test_x, test_y, experiences)
        if labels_from_zero:
            parts = [
                ((tx, renumber(ty, group)), (vx, renumber(vy, group)))
                for ((tx, ty), (vx, vy)), group in zip(parts, experiences)
            ]
    else:
        parts = list(experiences)
    generator = torch.Generator().manual_seed(subset_seed)
    train, test, classes = [], [], []
    for index, ((tx, ty), (vx, vy)) in enumerate(parts):
        label = task_label_for(scenario, index)
        keep = balanced_subset(ty, train_subset, generator)
        train.append(tensor_dataset(rows(tx, keep), rows(ty, keep), label))
        classes.append(set(torch.unique(rows(ty, keep)).tolist()))
        keep = balanced_subset(vy, test_subset, generator)
        test.append(tensor_dataset(rows(vx, keep), rows(vy, keep), label))
    return assemble(train, test, classes)


def _is_class_list(entry) -> bool:
    return all(isinstance(c, int) or (torch.is_tensor(c) and c.ndim == 0) for c in entry)


def split_by_classes(train_x, train_y, test_x, test_y, class_groups) -> list[ExperienceTensors]:
    """Per-experience ``((train_x, train_y), (test_x, test_y))`` for each group of classes."""
    parts = []
    for group in class_groups:
        group = torch.as_tensor([int(c) for c in group], dtype=torch.long)
        train_rows = torch.isin(train_y, group).nonzero().squeeze(1)
        test_rows = torch.isin(test_y, group).nonzero().squeeze(1)
        parts.append(((rows(train_x, train_rows), rows(train_y, train_rows)), (rows(test_x, test_rows), rows(test_y, test_rows))))
    return parts


def rows(tensor: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """``tensor[indices]`` along the first dimension.

    ``index_select`` rather than advanced indexing: on a busy 2-core machine the latter paid
    10-20 ms a call (waking threads) even for a few rows; ``index_select`` pays microseconds.
    """
    return tensor.index_select(0, indices)


def renumber(labels: torch.Tensor, classes: Sequence[int]) -> torch.Tensor:
    """``labels`` (all drawn from ``classes``) replaced by their position in ``classes``."""
    lookup = torch.full((int(max(classes)) + 1,), -1, dtype=torch.long)
    lookup[torch.as_tensor([int(c) for c in classes])] = torch.arange(len(classes))
    return lookup[labels]


def balanced_subset(labels: torch.Tensor, size: int, generator: torch.Generator) -> torch.Tensor:
    """Indices of ``size`` samples drawn at random, as evenly over the classes as they allow.

    ``size`` 0 (or at least ``len(labels)``) keeps everything in the original order.
    """
    n = len(labels)
    if size <= 0 or size >= n:
        return torch.arange(n)
    order = torch.randperm(n, generator=generator)
    shuffled = rows(labels, order)
    # Each sample's rank among the shuffled samples of its class: taking the lowest ranks
    # first takes one of every class, then a second of every class, and so on.
    rank = torch.empty(n, dtype=torch.long)
    for value in torch.unique(shuffled):
        where = (shuffled == value).nonzero(as_tuple=True)[0]
        rank[where] = torch.arange(len(where))
    chosen = rows(order, torch.sort(rank, stable=True).indices[:size])
    return torch.sort(chosen).values


def class_groups(classes: Sequence[int], n_experiences: int) -> list[list[int]]:
    """``classes`` cut in order into ``n_experiences`` equal groups."""
    classes = list(classes)
    if n_experiences < 1 or len(classes) % n_experiences:
        raise ValueError(f"{len(classes)} classes do not split into {n_experiences} equal experiences")
    size = len(classes) // n_experiences
    return [classes[i * size : (i + 1) * size] for i in range(n_experiences)]


def shuffled(values: Sequence[int], seed: int) -> list[int]:
    """``values`` in an order fixed by ``seed`` alone (not by the global RNG)."""
    generator = torch.Generator().manual_seed(seed)
    return [values[i] for i in torch.randperm(len(values), generator=generator).tolist()]


def class_split_benchmark(name: str, context, data, n_classes: int, n_experiences: int, class_order,
                          class_order_seed, train_subset: int, test_subset: int):
    """A split stream's benchmark from whole-data-set tensors (``data.train_x`` and friends).

    Returns ``(benchmark, groups, settings)``: the class groups of the experiences, and the
    options that decide which samples are used (for the data fingerprint).
    """
    from . import common

    common.check_scenario(context.scenario, ("class", "task"), name)
    seed = common.seed_or_default(class_order_seed, context.seed, name, "class_order_seed")
    groups = common.groups_of(common.class_order(class_order, seed, range(n_classes), name), n_experiences, name)
    benchmark = build_benchmark(
        data.train_x, data.train_y, data.test_x, data.test_y, groups, context.scenario,
        train_subset=common.non_negative(train_subset, name, "train_subset"),
        test_subset=common.non_negative(test_subset, name, "test_subset"),
        labels_from_zero=context.scenario == "task",
    )
    settings = {"n_experiences": n_experiences, "train_subset": train_subset, "test_subset": test_subset}
    return benchmark, groups, settings
