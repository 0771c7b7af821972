"""split-cifar10, split-cifar100 and cifar100-shift, from the CIFAR python pickles.

Layouts are torchvision's (the archives from the CIFAR page, unpacked):
``<data root>/cifar-10-batches-py/{data_batch_1..5,test_batch}`` and
``<data root>/cifar-100-python/{train,test}``. Each pickle holds ``data`` (n x 3072 uint8, the
red, green and blue planes of a 32x32 image) and its labels; CIFAR-100's carry both
``fine_labels`` (100 classes) and ``coarse_labels`` (20 superclasses). Images are scaled to
[0, 1] and standardized per channel once; there is no per-sample augmentation.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from collapsebench import CollapsebenchError, StreamContext, StreamData

from . import common, datafiles, tensors

CIFAR10_FOLDER = "cifar-10-batches-py"
CIFAR10_FILES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
CIFAR100_FOLDER = "cifar-100-python"
CIFAR100_FILES = ["train", "test"]
#: Per-channel mean and standard deviation of each training set's pixels in [0, 1].
CIFAR10_STATS = ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))
CIFAR100_STATS = ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762))
INPUT_SHAPE = (3, 32, 32)


@dataclass
class Cifar:
    train_x: torch.Tensor  # n x 3 x 32 x 32 float32, standardized
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    files: list[Path]
    #: CIFAR-100 only: the superclass of each training and test image
    train_coarse: torch.Tensor | None = None
    test_coarse: torch.Tensor | None = None

    def size_note(self, name: str) -> str:
        return f"{len(self.train_y):,} train / {len(self.test_y):,} test {name} images"


def read_pickle(path: Path) -> dict[str, object]:
    """A CIFAR pickle as a dict with str keys (the files were written by Python 2, with bytes keys)."""
    try:
        with path.open("rb") as handle:
            raw = pickle.load(handle, encoding="bytes")
    except (pickle.UnpicklingError, EOFError, ValueError) as exc:
        raise CollapsebenchError(f"{path} is not a readable CIFAR pickle ({exc}); the download may be corrupt.") from None
    return {(k.decode() if isinstance(k, bytes) else k): v for k, v in raw.items()}


def _images(arrays: list[np.ndarray], stats) -> torch.Tensor:
    data = np.concatenate(arrays).reshape(-1, *INPUT_SHAPE)
    x = torch.from_numpy(data.astype(np.float32) / 255.0)
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in stats)
    return (x - mean) / std


def _labels(batch: dict, key: str, path: Path) -> torch.Tensor:
    if key not in batch or "data" not in batch:
        raise CollapsebenchError(f"{path} lacks the {key!r} or 'data' entry of a CIFAR pickle.")
    if len(batch[key]) != len(batch["data"]):
        raise CollapsebenchError(f"{path}: {len(batch['data'])} images but {len(batch[key])} labels.")
    return torch.from_numpy(np.asarray(batch[key], dtype=np.int64))


def _data_files(data_root: Path, which: str, download: bool) -> list[Path]:
    """The pickles of CIFAR-10 or CIFAR-100 under ``data_root``, fetched first if asked and missing."""
    folder, files, title = {
        "cifar10": (CIFAR10_FOLDER, CIFAR10_FILES, "CIFAR-10"),
        "cifar100": (CIFAR100_FOLDER, CIFAR100_FILES, "CIFAR-100"),
    }[which]
    folder = Path(data_root) / folder
    if download and not all((folder / name).is_file() for name in files):
        import torchvision

        getattr(torchvision.datasets, title.replace("-", ""))(str(data_root), train=True, download=True)
    return datafiles.require_files(
        folder,
        files,
        title,
        f"Pass --download to fetch it with torchvision, or unpack {which.replace('cifar', 'cifar-')}-python.tar.gz "
        "from https://www.cs.toronto.edu/~kriz/cifar.html into the data root.",
    )


def load_cifar10(data_root: Path, download: bool = False) -> Cifar:
    paths = _data_files(data_root, "cifar10", download)
    batches = [read_pickle(p) for p in paths]
    labels = torch.cat([_labels(b, "labels", p) for b, p in zip(batches, paths)])
    n_test = len(batches[-1]["labels"])
    x = _images([np.asarray(b["data"]) for b in batches], CIFAR10_STATS)
    return Cifar(x[:-n_test], labels[:-n_test], x[-n_test:], labels[-n_test:], paths)


def load_cifar100(data_root: Path, download: bool = False) -> Cifar:
    paths = _data_files(data_root, "cifar100", download)
    train, test = (read_pickle(p) for p in paths)
    fine = [_labels(b, "fine_labels", p) for b, p in zip((train, test), paths)]
    coarse = [_labels(b, "coarse_labels", p) for b, p in zip((train, test), paths)]
    return Cifar(
        _images([np.asarray(train["data"])], CIFAR100_STATS),
        fine[0],
        _images([np.asarray(test["data"])], CIFAR100_STATS),
        fine[1],
        paths,
        coarse[0],
        coarse[1],
    )


def _split(name, data: Cifar, n_classes, context, n_experiences, class_order, class_order_seed, train_subset, test_subset):
    benchmark, _groups, settings = tensors.class_split_benchmark(
        name, context, data, n_classes, n_experiences, class_order, class_order_seed, train_subset, test_subset
    )
    return StreamData(
        fixed_samples=True,  # tensors prepared once, no random augmentation
        benchmark=benchmark,
        input_shape=INPUT_SHAPE,
        n_classes=n_classes,
        scenario=context.scenario,
        fingerprint=datafiles.fingerprint(name, data.files, settings),
        description=f"split CIFAR-{n_classes}, {n_experiences} experiences of {n_classes // n_experiences} classes; "
        + data.size_note(f"CIFAR-{n_classes}"),
    )


def build_split_cifar10(context: StreamContext, **options) -> StreamData:
    data = load_cifar10(context.data_root, context.download)
    return _split("split-cifar10", data, 10, context, **options)


def build_split_cifar100(context: StreamContext, **options) -> StreamData:
    data = load_cifar100(context.data_root, context.download)
    return _split("split-cifar100", data, 100, context, **options)


def superclass_members(fine: torch.Tensor, coarse: torch.Tensor) -> dict[int, list[int]]:
    """Each superclass's subclasses (fine labels), in increasing order, read off the labels."""
    members: dict[int, set[int]] = {}
    for f, c in torch.unique(torch.stack([fine, coarse], 1), dim=0).tolist():
        members.setdefault(c, set()).add(f)
    for f in torch.unique(fine).tolist():
        owners = [c for c, subs in members.items() if f in subs]
        if len(owners) > 1:
            raise CollapsebenchError(f"CIFAR-100 labels put subclass {f} in several superclasses {owners}.")
    return {c: sorted(subs) for c, subs in sorted(members.items())}


def shift_assignment(members: dict[int, list[int]], n_experiences: int, seed: int) -> list[list[int]]:
    """Experience ``e``'s subclasses: the ``e``-th share of every superclass's shuffled subclasses."""
    smallest = min(len(subs) for subs in members.values())
    if not 1 <= n_experiences <= smallest:
        raise CollapsebenchError(
            f"Bad value for option 'n_experiences' of 'cifar100-shift': every superclass has {smallest} "
            f"subclasses, so choose 1 to {smallest} experiences, not {n_experiences}."
        )
    share = smallest // n_experiences
    experiences: list[list[int]] = [[] for _ in range(n_experiences)]
    for superclass, subclasses in members.items():
        order = tensors.shuffled(subclasses, seed * 1000 + superclass)
        for e in range(n_experiences):
            experiences[e].extend(order[e * share : (e + 1) * share])
    return [sorted(subs) for subs in experiences]


def build_cifar100_shift(
    context: StreamContext,
    n_experiences: int,
    class_order_seed: int | None,
    train_subset: int,
    test_subset: int,
) -> StreamData:
    name = "cifar100-shift"
    common.check_scenario(context.scenario, ("domain", "task"), name)
    seed = common.seed_or_default(class_order_seed, context.seed, name, "class_order_seed")
    data = load_cifar100(context.data_root, context.download)
    members = superclass_members(torch.cat([data.train_y, data.test_y]), torch.cat([data.train_coarse, data.test_coarse]))
    subclasses = shift_assignment(members, n_experiences, seed)
    # Split by subclass, then label by superclass: the label space stays the 20 superclasses.
    parts = []
    for fine_group in subclasses:
        group = torch.tensor(fine_group)
        train_rows = torch.isin(data.train_y, group).nonzero().squeeze(1)
        test_rows = torch.isin(data.test_y, group).nonzero().squeeze(1)
        parts.append(
            (
                (tensors.rows(data.train_x, train_rows), tensors.rows(data.train_coarse, train_rows)),
                (tensors.rows(data.test_x, test_rows), tensors.rows(data.test_coarse, test_rows)),
            )
        )
    benchmark = tensors.build_benchmark(
        None, None, None, None, parts, context.scenario,
        train_subset=common.non_negative(train_subset, name, "train_subset"),
        test_subset=common.non_negative(test_subset, name, "test_subset"),
    )
    settings = {"n_experiences": n_experiences, "train_subset": train_subset, "test_subset": test_subset}
    # Which subclasses each experience drew, for the record and for tests.
    for stream in (benchmark.train_stream, benchmark.test_stream):
        for experience, fine_group in zip(stream, subclasses):
            experience.subclasses = fine_group
    n_superclasses = len(members)
    return StreamData(
        fixed_samples=True,  # tensors prepared once, no random augmentation
        benchmark=benchmark,
        input_shape=INPUT_SHAPE,
        n_classes=n_superclasses,
        scenario=context.scenario,
        fingerprint=datafiles.fingerprint(name, data.files, settings),
        description=f"CIFAR-100 {n_superclasses}-way superclass task, {n_experiences} experiences of "
        f"different subclasses; " + data.size_note("CIFAR-100"),
    )
