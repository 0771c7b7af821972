"""random-labels: another stream's inputs with each experience's labels shuffled.

The labels of experience ``i`` are a random permutation of its own labels, so the class balance
is kept and nothing about an input predicts its label: fitting an experience is pure
memorization, and how fast a network still fits new ones measures its plasticity. By default
each experience is tested on its own (shuffled) training samples, since accuracy on held-out
inputs with random labels is chance by construction.
"""

from __future__ import annotations

import hashlib
from typing import Any

import torch
from torch.utils.data import Dataset

from collapsebench import CollapsebenchError, StreamContext, StreamData, unknown_name_error

from . import common, tensors

NAME = "random-labels"


class Relabelled(Dataset):
    """``(base[i]'s input, labels[i])``."""

    def __init__(self, base, labels: torch.Tensor):
        self.base = base
        self.labels = labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index):
        return self.base[index][0], self.labels[index]

    def collapsebench_rows(self, indices: torch.Tensor):
        """The bulk path of the base's inputs, when the base offers one (collapsebench.dataset_rows)."""
        from collapsebench import dataset_rows

        rows = dataset_rows(self.base, indices)
        return None if rows is None else (rows[0], self.labels.index_select(0, indices))


def base_records() -> dict[str, Any]:
    """The built-in stream records by name, as this package's hook provides them."""
    from . import collapsebench_streams

    return {record.name: record for record in collapsebench_streams() if record.name != NAME}


def build_base(name: str, context: StreamContext, options: dict[str, Any]) -> StreamData:
    """Build the base stream: through the host's ``context.build_stream`` when it offers one
    (it knows third-party streams too), else from the built-in streams."""
    if name == NAME:
        raise CollapsebenchError(f"{NAME!r} cannot use itself as its base stream.")
    build = getattr(context, "build_stream", None)
    if build is not None:
        return build(name, context, options)
    records = base_records()
    if name not in records:
        raise unknown_name_error("stream", name, records, hint=f"(option 'base' of {NAME!r})")
    record = records[name]
    common.check_scenario(context.scenario, record.scenarios, name)
    return record.factory(context, **record.resolve_options(options))


def _labels_of(dataset) -> torch.Tensor:
    return torch.as_tensor([int(t) for t in dataset.targets], dtype=torch.long)


def _task_label(experience) -> int:
    return int(getattr(experience, "task_label", 0))


def build_random_labels(
    context: StreamContext,
    base: str,
    base_options: dict,
    label_seed: int | None,
    evaluate_on: str,
) -> StreamData:
    if not isinstance(base_options, dict):
        raise CollapsebenchError(f"Bad value for option 'base_options' of {NAME!r}: expected a table, got {base_options!r}.")
    seed = common.seed_or_default(label_seed, context.seed, NAME, "label_seed")
    source = build_base(base, context, dict(base_options))
    generator = torch.Generator().manual_seed(seed)
    train, test, classes = [], [], []
    for train_experience, test_experience in zip(source.benchmark.train_stream, source.benchmark.test_stream):
        task = _task_label(train_experience)
        labels = _labels_of(train_experience.dataset)
        labels = labels[torch.randperm(len(labels), generator=generator)]
        relabelled = tensors.view_dataset(Relabelled(train_experience.dataset, labels), labels, task)
        train.append(relabelled)
        classes.append(set(torch.unique(labels).tolist()))
        if evaluate_on == "train":
            test.append(relabelled)
        else:
            labels = _labels_of(test_experience.dataset)
            labels = labels[torch.randperm(len(labels), generator=generator)]
            test.append(tensors.view_dataset(Relabelled(test_experience.dataset, labels), labels, _task_label(test_experience)))
    benchmark = tensors.assemble(train, test, classes)
    digest = hashlib.sha256(f"{source.fingerprint}|{evaluate_on}".encode()).hexdigest()[:12]
    return StreamData(
        fixed_samples=source.fixed_samples,  # relabelling adds no randomness per read
        benchmark=benchmark,
        input_shape=source.input_shape,
        n_classes=source.n_classes,
        scenario=source.scenario,
        fingerprint=f"{NAME}-{digest}",
        reset_head_each_experience=source.reset_head_each_experience,
        description=f"{source.description}; labels shuffled within each experience, tested on "
        + ("its own training samples" if evaluate_on == "train" else "the base's test samples, relabelled at random"),
    )
