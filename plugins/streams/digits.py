"""split-digits: scikit-learn's bundled 8x8 handwritten digits as 5 experiences of 2 classes.

It needs no download and trains in seconds, which makes it the default stream and the one CI
runs. Pixels are scaled to [0, 1] once, here, so no transform runs per sample.
"""

from __future__ import annotations

import hashlib

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


def build_split_digits(context: StreamContext, n_experiences: int, test_fraction: float) -> StreamData:
    from avalanche.benchmarks import nc_benchmark
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)  # 4-bit pixels in [0, 16]
    labels = digits.target.astype(np.int64)
    train_x, test_x, train_y, test_y = train_test_split(
        images, labels, test_size=test_fraction, stratify=labels, random_state=context.seed
    )

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
    fingerprint = hashlib.sha256(images.tobytes() + labels.tobytes()).hexdigest()[:16]
    return StreamData(
        fixed_samples=True,  # tensors prepared once, no random augmentation
        benchmark=benchmark,
        input_shape=(1, 8, 8),
        n_classes=10,
        scenario=context.scenario,
        fingerprint=f"sklearn-digits-{fingerprint}-test{test_fraction}",
        description=f"sklearn digits, {len(train_y)} train / {len(test_y)} test images",
    )
