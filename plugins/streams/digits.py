"""split-digits: scikit-learn's bundled 8x8 handwritten digits as 5 experiences of 2 classes.

It needs no download and trains in seconds, which makes it the default stream and the one CI
runs. Pixels are scaled to [0, 1] once, here, so no transform runs per sample.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from collapsebench import StreamContext, StreamData


class InMemoryClassification(Dataset):
    """Inputs and integer targets held as tensors; Avalanche reads ``targets``."""

    def __init__(self, inputs: torch.Tensor, targets: torch.Tensor):
        self.inputs = inputs
        self.targets = targets

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index):
        return self.inputs[index], self.targets[index]


def split_digits(seed: int, test_fraction: float):
    """``(train_x, test_x, train_y, test_y, digest)``: scikit-learn's stratified split, kept on disk.

    Importing scikit-learn (SciPy with it) costs as much as importing torch, for arrays that
    depend only on its version, the seed and the fraction; so they are computed once and read
    back from the cache folder afterwards, byte for byte what scikit-learn returned.
    """
    path = _cache_file(seed, test_fraction)
    if path is not None:
        try:
            with np.load(path, allow_pickle=False) as cached:
                return (*(cached[key] for key in _SPLIT_KEYS), str(cached["digest"]))
        except (OSError, KeyError, ValueError, EOFError):
            pass  # absent or unreadable: compute it again
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)  # 4-bit pixels in [0, 16]
    labels = digits.target.astype(np.int64)
    split = train_test_split(images, labels, test_size=test_fraction, stratify=labels, random_state=seed)
    digest = hashlib.sha256(images.tobytes() + labels.tobytes()).hexdigest()[:16]
    if path is not None:
        _write_cache(path, dict(zip(_SPLIT_KEYS, split)), digest)
    return (*split, digest)


_SPLIT_KEYS = ("train_x", "test_x", "train_y", "test_y")


def _cache_file(seed: int, test_fraction: float) -> Path | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        sklearn_version = version("scikit-learn")
    except PackageNotFoundError:
        return None
    base = os.environ.get("COLLAPSEBENCH_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "collapsebench"
    )
    return Path(base) / "split-digits" / f"sklearn-{sklearn_version}-seed{seed}-test{test_fraction!r}.npz"


def _write_cache(path: Path, arrays: dict, digest: str) -> None:
    # A cache that cannot be written only costs time later; never fail a run over it.
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npz")
        np.savez(temporary, **arrays, digest=np.array(digest))
        temporary.replace(path)
    except OSError:
        pass


def build_split_digits(context: StreamContext, n_experiences: int, test_fraction: float) -> StreamData:
    from avalanche.benchmarks import nc_benchmark

    train_x, test_x, train_y, test_y, fingerprint = split_digits(context.seed, test_fraction)

    def dataset(x, y):
        return InMemoryClassification(torch.from_numpy(x).unsqueeze(1), torch.from_numpy(y))

    benchmark = nc_benchmark(
        dataset(train_x, train_y),
        dataset(test_x, test_y),
        n_experiences=n_experiences,
        task_labels=context.scenario == "task",
        seed=context.seed,
        # Task-incremental heads see their own classes as 0..k-1.
        class_ids_from_zero_in_each_exp=context.scenario == "task",
    )
    return StreamData(
        fixed_samples=True,  # tensors prepared once, no random augmentation
        benchmark=benchmark,
        input_shape=(1, 8, 8),
        n_classes=10,
        scenario=context.scenario,
        fingerprint=f"sklearn-digits-{fingerprint}-test{test_fraction}",
        description=f"sklearn digits, {len(train_y)} train / {len(test_y)} test images",
    )
