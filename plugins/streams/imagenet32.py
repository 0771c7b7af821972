"""continual-imagenet32: Dohare et al.'s Continual ImageNet on the 32x32 downsampled ImageNet.

Layout: ``<data root>/imagenet32/train_data_batch_1.npz`` .. ``train_data_batch_10.npz`` and
``val_data.npz``, the files of Imagenet32_train_npz.zip and Imagenet32_val_npz.zip (Chrabaszcz
et al.) unpacked side by side. Each holds ``data`` (n x 3072 uint8: red, green and blue planes of
a 32x32 image, as in CIFAR) and ``labels`` (1..1000).

As in Dohare et al., each class contributes 700 images, the first ones in the training batches:
600 to train on and 100 to test on. Task ``k`` is a binary problem on a pair of classes (label 0
for the first, 1 for the second); pairs come from successive shuffles of the classes, so classes
recur once every class has been used. The output layer is reset at the start of each task.

Images stay uint8 in memory (all 1,000 classes take 2.1 GB, four times that as floats) and are
scaled and standardized when read, one cheap tensor operation per sample.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from collapsebench import CollapsebenchError, StreamContext, StreamData

from . import common, datafiles, tensors

FOLDER = "imagenet32"
TRAIN_FILES = [f"train_data_batch_{i}.npz" for i in range(1, 11)]
VAL_FILE = "val_data.npz"
IMAGENET_CLASSES = 1000
INPUT_SHAPE = (3, 32, 32)
#: ImageNet's per-channel mean and standard deviation of pixels in [0, 1].
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
HOW_TO_GET = (
    "Download Imagenet32_train_npz.zip and Imagenet32_val_npz.zip from https://image-net.org/download-images "
    "(downsampled ImageNet 32x32; it needs an account, so --download cannot fetch it) and unpack the .npz "
    "files into that folder."
)


class NormalizedImages(Dataset):
    """``storage[indices[i]]`` scaled to [0, 1] and standardized per channel when read."""

    def __init__(self, storage: torch.Tensor, indices: torch.Tensor, labels: torch.Tensor):
        self.storage = storage
        self.indices = indices
        self.labels = labels
        std = torch.tensor(STD).view(3, 1, 1)
        # (x / 255 - mean) / std as one multiply and one subtract
        self.scale = 1.0 / (255.0 * std)
        self.shift = torch.tensor(MEAN).view(3, 1, 1) / std

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index):
        return self.storage[self.indices[index]].float() * self.scale - self.shift, self.labels[index]

    def collapsebench_rows(self, indices: torch.Tensor):
        """Samples ``indices`` stacked: the same operations as ``__getitem__``, on all of them at once."""
        images = tensors.rows(self.storage, tensors.rows(self.indices, indices)).float()
        return images * self.scale - self.shift, tensors.rows(self.labels, indices)


def class_pairs(n_tasks: int, n_classes: int, seed: int) -> list[tuple[int, int]]:
    """``n_tasks`` pairs of distinct classes: successive seeded shuffles of ``0..n_classes-1`` cut in twos."""
    generator = torch.Generator().manual_seed(seed)
    pairs: list[tuple[int, int]] = []
    while len(pairs) < n_tasks:
        order = torch.randperm(n_classes, generator=generator).tolist()
        pairs.extend(zip(order[0::2], order[1::2]))
    return pairs[:n_tasks]


def _read_npz(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with np.load(path) as archive:
            data, labels = archive["data"], np.asarray(archive["labels"], dtype=np.int64)
    except (OSError, ValueError, KeyError) as exc:
        raise CollapsebenchError(f"{path} is not an ImageNet32 batch with 'data' and 'labels' ({exc}).") from None
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(data) != len(labels):
        raise CollapsebenchError(
            f"{path}: expected 'data' of n x 3072 pixels and n labels, got {data.shape} and {len(labels)} labels."
        )
    return data, labels - 1  # the files number classes from 1


def collect(paths: list[Path], quotas: dict[int, int]) -> tuple[dict[int, list[np.ndarray]], list[Path]]:
    """The first ``quotas[c]`` images of each class ``c``, reading ``paths`` in order, only as far as needed.

    Returns the images per class and the files that were read.
    """
    chunks: dict[int, list[np.ndarray]] = {c: [] for c in quotas}
    remaining = dict(quotas)
    read = []
    for path in paths:
        if not any(remaining.values()):
            break
        data, labels = _read_npz(path)
        read.append(path)
        for c in [c for c, left in remaining.items() if left]:
            rows = np.flatnonzero(labels == c)[: remaining[c]]
            chunks[c].append(data[rows])
            remaining[c] -= len(rows)
    short = {c: quotas[c] - left for c, left in remaining.items() if left}
    if short:
        example = ", ".join(f"class {c + 1}: {n}" for c, n in list(short.items())[:5])
        raise CollapsebenchError(
            f"ImageNet32 in {paths[0].parent}: {len(short)} classes have fewer images than needed "
            f"({quotas[next(iter(short))]} each); found {example}."
        )
    return chunks, read


def build_continual_imagenet32(
    context: StreamContext,
    n_experiences: int,
    n_classes: int,
    train_per_class: int,
    test_per_class: int,
    test_images: str,
    class_order_seed: int | None,
) -> StreamData:
    name = "continual-imagenet32"
    common.check_scenario(context.scenario, ("domain", "task"), name)
    if not 2 <= n_classes <= IMAGENET_CLASSES:
        raise CollapsebenchError(f"Bad value for option 'n_classes' of {name!r}: expected 2 to 1000, got {n_classes}.")
    if n_experiences < 1 or train_per_class < 1 or test_per_class < 1:
        raise CollapsebenchError(f"Options n_experiences, train_per_class and test_per_class of {name!r} must be at least 1.")
    if context.download:
        raise CollapsebenchError(f"{name!r} cannot be downloaded automatically. {HOW_TO_GET}")
    seed = common.seed_or_default(class_order_seed, context.seed, name, "class_order_seed")
    folder = Path(context.data_root) / FOLDER
    needed_files = TRAIN_FILES + ([VAL_FILE] if test_images == "val" else [])
    paths = datafiles.require_files(folder, needed_files, "ImageNet32 (downsampled ImageNet, 32x32)", HOW_TO_GET)

    pairs = class_pairs(n_experiences, n_classes, seed)
    used = sorted({c for pair in pairs for c in pair})
    from_train = train_per_class + (test_per_class if test_images == "train" else 0)
    train_chunks, _ = collect(paths[: len(TRAIN_FILES)], {c: from_train for c in used})
    if test_images == "val":
        test_chunks, _ = collect(paths[-1:], {c: test_per_class for c in used})

    # One uint8 store; per class, the rows of its training and its test images.
    blocks, train_rows, test_rows, offset = [], {}, {}, 0
    for c in used:
        images = np.concatenate(train_chunks[c])
        if test_images == "val":
            images = np.concatenate([images, *test_chunks[c]])
        blocks.append(images)
        train_rows[c] = torch.arange(offset, offset + train_per_class)
        test_rows[c] = torch.arange(offset + train_per_class, offset + train_per_class + test_per_class)
        offset += len(images)
    storage = torch.from_numpy(np.concatenate(blocks)).view(-1, *INPUT_SHAPE)

    train, test = [], []
    for index, (first, second) in enumerate(pairs):
        label = tensors.task_label_for(context.scenario, index)
        for rows, out in ((train_rows, train), (test_rows, test)):
            indices = torch.cat([rows[first], rows[second]])
            labels = torch.cat([torch.zeros(len(rows[first]), dtype=torch.long), torch.ones(len(rows[second]), dtype=torch.long)])
            out.append(tensors.view_dataset(NormalizedImages(storage, indices, labels), labels, label))
    benchmark = tensors.assemble(train, test, [{0, 1}] * n_experiences)
    for stream in (benchmark.train_stream, benchmark.test_stream):
        for experience, (first, second) in zip(stream, pairs):
            # ImageNet's own class numbers (1..1000) behind labels 0 and 1.
            experience.imagenet_classes = (first + 1, second + 1)
    settings = {
        "n_classes": n_classes,
        "train_per_class": train_per_class,
        "test_per_class": test_per_class,
        "test_images": test_images,
    }
    return StreamData(
        fixed_samples=True,  # tensors prepared once, no random augmentation
        benchmark=benchmark,
        input_shape=INPUT_SHAPE,
        n_classes=2,
        scenario=context.scenario,
        fingerprint=datafiles.fingerprint(name, paths, settings),
        reset_head_each_experience=True,
        description=f"Continual ImageNet 32x32, {n_experiences} binary tasks over {len(used)} classes, "
        f"{train_per_class} train / {test_per_class} test images per class ({test_images} images for testing)",
    )
