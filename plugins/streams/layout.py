"""The files each data-set stream reads, checked before torch and Avalanche load.

These are the ``check_data`` functions of the stream records in ``catalog.py``: a missing or
incomplete data root is reported in well under a second, not after the run's imports. The
loaders (mnist.py, cifar.py, imagenet32.py) name the same files; tests/test_startup.py checks
that the lists agree, so the two cannot drift apart.
"""

from __future__ import annotations

from pathlib import Path

from .datafiles import require_files

MNIST = ("MNIST/raw", ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                       "t10k-labels-idx1-ubyte"), "MNIST",
         "Pass --download to fetch it with torchvision, or point --data-root at a folder holding "
         "MNIST/raw/ in torchvision's layout (the four uncompressed *-ubyte files).")
CIFAR10 = ("cifar-10-batches-py", (*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"), "CIFAR-10",
           "Pass --download to fetch it with torchvision, or unpack cifar-10-python.tar.gz "
           "from https://www.cs.toronto.edu/~kriz/cifar.html into the data root.")
CIFAR100 = ("cifar-100-python", ("train", "test"), "CIFAR-100",
            "Pass --download to fetch it with torchvision, or unpack cifar-100-python.tar.gz "
            "from https://www.cs.toronto.edu/~kriz/cifar.html into the data root.")
IMAGENET32_TRAIN = tuple(f"train_data_batch_{i}.npz" for i in range(1, 11))
IMAGENET32_VAL = "val_data.npz"
IMAGENET32 = ("imagenet32", IMAGENET32_TRAIN, "ImageNet32 (downsampled ImageNet, 32x32)",
              "Download Imagenet32_train_npz.zip and Imagenet32_val_npz.zip from https://image-net.org/download-images "
              "(downsampled ImageNet 32x32; it needs an account, so --download cannot fetch it) and unpack the .npz "
              "files into that folder.")


def _require(context, layout, names=None) -> None:
    folder, files, title, how_to_get = layout
    require_files(Path(context.data_root).expanduser() / folder, names or files, title, how_to_get)


def _downloadable(layout):
    def check_data(context, **options) -> None:
        if not context.download:  # with --download the loader fetches what is missing
            _require(context, layout)

    return check_data


check_mnist = _downloadable(MNIST)
check_cifar10 = _downloadable(CIFAR10)
check_cifar100 = _downloadable(CIFAR100)


def check_imagenet32(context, test_images: str = "train", **options) -> None:
    if not context.download:  # the loader explains that this one cannot be downloaded
        _require(context, IMAGENET32, IMAGENET32_TRAIN + ((IMAGENET32_VAL,) if test_images == "val" else ()))
