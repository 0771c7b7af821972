"""split-mnist and permuted-mnist, from torchvision's raw MNIST files.

The layout is torchvision's: ``<data root>/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte``.
The files are read with a small IDX reader (no torchvision import, no download check), scaled to
[0, 1] and standardized once with MNIST's usual mean and standard deviation.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from collapsebench import CollapsebenchError, StreamContext, StreamData

from . import common, datafiles, tensors

FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
#: The usual MNIST normalization constants (mean and std of the full training set's pixels).
MEAN, STD = 0.1307, 0.3081
INPUT_SHAPE = (1, 28, 28)
_IDX_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


@dataclass
class Mnist:
    train_x: torch.Tensor  # n x 1 x 28 x 28 float32, standardized
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    files: list[Path]

    def size_note(self) -> str:
        n = len(self.train_y) + len(self.test_y)
        sample = "" if n == 70_000 else f"; a {n:,}-image sample, not comparable with full-MNIST numbers"
        return f"{len(self.train_y):,} train / {len(self.test_y):,} test MNIST images{sample}"


def read_idx(path: Path, item_shape: tuple[int, ...] | None = None) -> np.ndarray:
    """An IDX file (LeCun's MNIST format) as a numpy array; with ``item_shape``, each item must have it."""
    data = path.read_bytes()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_TYPES:
        raise CollapsebenchError(f"{path} is not an IDX file (bad magic number); the download may be corrupt.")
    n_dims = data[3]
    if len(data) < 4 + 4 * n_dims:
        raise CollapsebenchError(f"{path} is truncated: its header is incomplete.")
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(n_dims))
    if item_shape is not None and (n_dims != 1 + len(item_shape) or shape[1:] != item_shape):
        expected = "x".join(map(str, ("N", *item_shape)))
        raise CollapsebenchError(
            f"{path} holds an array of shape {'x'.join(map(str, shape)) or '()'}; MNIST needs {expected} here."
        )
    dtype = np.dtype(_IDX_TYPES[data[2]])
    offset = 4 + 4 * n_dims
    expected = offset + int(np.prod(shape)) * dtype.itemsize
    if len(data) != expected:
        raise CollapsebenchError(f"{path} holds {len(data)} bytes but its header promises {expected}; it is truncated or corrupt.")
    return np.frombuffer(data, dtype=dtype, offset=offset).reshape(shape)


def mnist_folder(data_root: Path) -> Path:
    return Path(data_root) / "MNIST" / "raw"


def load_mnist(data_root: Path, download: bool = False) -> Mnist:
    folder = mnist_folder(data_root)
    if download and not all((folder / name).is_file() for name in FILES.values()):
        import torchvision

        for train in (True, False):
            torchvision.datasets.MNIST(str(data_root), train=train, download=True)
    paths = datafiles.require_files(
        folder,
        FILES.values(),
        "MNIST",
        "Pass --download to fetch it with torchvision, or point --data-root at a folder holding "
        "MNIST/raw/ in torchvision's layout (the four uncompressed *-ubyte files).",
    )
    # Checked as read, naming the file: a wrong shape otherwise surfaced deep inside the model.
    arrays = {key: read_idx(path, INPUT_SHAPE[1:] if key.endswith("images") else ())
              for key, path in zip(FILES, paths)}
    for split in ("train", "test"):
        if len(arrays[f"{split}_images"]) != len(arrays[f"{split}_labels"]):
            raise CollapsebenchError(f"MNIST in {folder}: the {split} images and labels differ in number.")
        datafiles.check_labels(folder / FILES[f"{split}_labels"], arrays[f"{split}_labels"], 10, "MNIST",
                               require_all=split == "train")

    def images(array):
        x = torch.from_numpy(array.astype(np.float32) / 255.0).unsqueeze(1)
        return (x - MEAN) / STD

    def labels(array):
        return torch.from_numpy(array.astype(np.int64))

    return Mnist(
        images(arrays["train_images"]),
        labels(arrays["train_labels"]),
        images(arrays["test_images"]),
        labels(arrays["test_labels"]),
        paths,
    )


def build_split_mnist(
    context: StreamContext,
    n_experiences: int,
    class_order: list,
    class_order_seed: int | None,
    train_subset: int,
    test_subset: int,
) -> StreamData:
    name = "split-mnist"
    common.check_scenario(context.scenario, ("class", "task"), name)  # before reading any file
    data = load_mnist(context.data_root, context.download)
    benchmark, groups, settings = tensors.class_split_benchmark(
        name, context, data, 10, n_experiences, class_order, class_order_seed, train_subset, test_subset
    )
    return StreamData(
        fixed_samples=True,  # tensors prepared once, no random augmentation
        benchmark=benchmark,
        input_shape=INPUT_SHAPE,
        n_classes=10,
        scenario=context.scenario,
        fingerprint=datafiles.fingerprint(name, data.files, settings),
        description=f"split MNIST, {n_experiences} experiences of classes {groups}; {data.size_note()}",
    )


class PermutedImages(Dataset):
    """``images[indices[i]]`` with its pixels reordered by ``permutation``, computed when read.

    Every experience shares the one copy of MNIST: hundreds of permuted copies would not fit
    in memory, and one gather of 784 values per sample costs about what reading a copy would.
    """

    def __init__(self, flat_images: torch.Tensor, labels: torch.Tensor, indices: torch.Tensor, permutation: torch.Tensor):
        self.flat_images = flat_images
        self.labels = tensors.rows(labels, indices)
        self.indices = indices
        self.permutation = permutation

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index):
        image = self.flat_images[self.indices[index]].index_select(0, self.permutation)
        return image.view(INPUT_SHAPE), self.labels[index]

    def collapsebench_rows(self, indices: torch.Tensor):
        """Samples ``indices`` stacked: the same values as ``__getitem__``, gathered all at once.

        ``torch.gather`` along the pixels rather than ``index_select(1, ...)``: the same copy of
        each value, about a fifth faster on a 500 x 784 block (docs/performance.md, long streams).
        """
        images = tensors.rows(self.flat_images, tensors.rows(self.indices, indices))
        images = torch.gather(images, 1, self.permutation.expand(len(images), -1))
        return images.view(-1, *INPUT_SHAPE), tensors.rows(self.labels, indices)


def permutations(n: int, seed: int, size: int = 28 * 28) -> list[torch.Tensor]:
    """``n`` pixel permutations drawn in turn from a generator seeded with ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    return [torch.randperm(size, generator=generator) for _ in range(n)]


def build_permuted_mnist(
    context: StreamContext,
    n_experiences: int,
    permutation_seed: int | None,
    train_subset: int,
    test_subset: int,
) -> StreamData:
    name = "permuted-mnist"
    common.check_scenario(context.scenario, ("domain",), name)
    if n_experiences < 1:
        raise CollapsebenchError(f"Bad value for option 'n_experiences' of {name!r}: expected at least 1, got {n_experiences}.")
    seed = common.seed_or_default(permutation_seed, context.seed, name, "permutation_seed")
    common.non_negative(train_subset, name, "train_subset")
    common.non_negative(test_subset, name, "test_subset")
    data = load_mnist(context.data_root, context.download)
    train_flat, test_flat = data.train_x.flatten(1), data.test_x.flatten(1)
    # A fixed generator, not the run's seed: a subset is part of the data's identity (the
    # fingerprint), the same for every seed.
    subsets = torch.Generator().manual_seed(0)
    train, test = [], []
    for permutation in permutations(n_experiences, seed):
        keep = tensors.balanced_subset(data.train_y, train_subset, subsets)
        train.append(tensors.view_dataset(PermutedImages(train_flat, data.train_y, keep, permutation), tensors.rows(data.train_y, keep)))
        keep = tensors.balanced_subset(data.test_y, test_subset, subsets)
        test.append(tensors.view_dataset(PermutedImages(test_flat, data.test_y, keep, permutation), tensors.rows(data.test_y, keep)))
    classes = [set(range(10))] * n_experiences
    settings = {"train_subset": train_subset, "test_subset": test_subset}
    return StreamData(
        fixed_samples=True,  # tensors prepared once, no random augmentation
        benchmark=tensors.assemble(train, test, classes),
        input_shape=INPUT_SHAPE,
        n_classes=10,
        scenario=context.scenario,
        fingerprint=datafiles.fingerprint(name, data.files, settings),
        description=f"permuted MNIST, {n_experiences} pixel permutations; {data.size_note()}",
    )
