"""Hostile data files (issue 17, "Data"): each ends in a message that names the file, never deep in the model."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from collapsebench.errors import CollapsebenchError
from collapsebench_plugins.streams import mnist


def write_idx(path, array: np.ndarray, header_shape=None) -> None:
    """An IDX file of uint8 ``array``; ``header_shape`` may lie about its shape."""
    shape = header_shape if header_shape is not None else array.shape
    header = bytes([0, 0, 0x08, len(shape)]) + b"".join(struct.pack(">I", n) for n in shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def make_root(tmp_path, *, images=(28, 28), labels=None, test_labels=None, label_shape=None):
    folder = tmp_path / "MNIST" / "raw"
    folder.mkdir(parents=True)
    n = 40
    train_labels = np.arange(n) % 10 if labels is None else np.asarray(labels)
    test = np.arange(20) % 10 if test_labels is None else np.asarray(test_labels)
    write_idx(folder / mnist.FILES["train_images"], np.zeros((len(train_labels), *images)))
    write_idx(folder / mnist.FILES["test_images"], np.zeros((len(test), *images)))
    write_idx(folder / mnist.FILES["train_labels"],
              train_labels if label_shape is None else train_labels.reshape(label_shape))
    write_idx(folder / mnist.FILES["test_labels"], test)
    return tmp_path, folder


def test_well_formed_files_load(tmp_path):
    root, _ = make_root(tmp_path)
    data = mnist.load_mnist(root)
    assert tuple(data.train_x.shape) == (40, 1, 28, 28)


def test_image_size_that_disagrees_with_the_header(tmp_path):
    root, folder = make_root(tmp_path)
    path = folder / mnist.FILES["train_images"]
    write_idx(path, np.zeros((40, 28, 27)), header_shape=(40, 28, 28))  # the header promises more than is there
    with pytest.raises(CollapsebenchError, match="train-images-idx3-ubyte.*bytes but its header promises"):
        mnist.load_mnist(root)


def test_image_size_other_than_the_streams(tmp_path):
    root, _ = make_root(tmp_path, images=(32, 32))
    with pytest.raises(CollapsebenchError, match=r"train-images-idx3-ubyte holds an array of shape 40x32x32; MNIST needs Nx28x28"):
        mnist.load_mnist(root)


def test_label_file_of_the_wrong_dimensionality(tmp_path):
    root, _ = make_root(tmp_path, label_shape=(20, 2))
    with pytest.raises(CollapsebenchError, match=r"train-labels-idx1-ubyte holds an array of shape 20x2; MNIST needs N here"):
        mnist.load_mnist(root)


def test_labels_out_of_range_are_refused_not_dropped(tmp_path):
    labels = np.arange(40) % 10
    labels[3] = 200
    root, _ = make_root(tmp_path, labels=labels)
    with pytest.raises(CollapsebenchError, match=r"train-labels-idx1-ubyte: MNIST labels must lie in 0\.\.9, but 1 do not \(for example 200\)"):
        mnist.load_mnist(root)


def test_a_data_set_of_one_class(tmp_path):
    root, _ = make_root(tmp_path, labels=np.zeros(40, dtype=int))
    with pytest.raises(CollapsebenchError, match=r"train-labels-idx1-ubyte: MNIST needs all 10 classes, but this file has 1 \(missing 1, 2"):
        mnist.load_mnist(root)


def test_truncated_header(tmp_path):
    root, folder = make_root(tmp_path)
    (folder / mnist.FILES["test_labels"]).write_bytes(bytes([0, 0, 0x08, 3, 0, 0]))
    with pytest.raises(CollapsebenchError, match="t10k-labels-idx1-ubyte is truncated"):
        mnist.load_mnist(root)


def test_cli_names_the_file_with_exit_2(cli, tmp_path):
    """Through the CLI (this one pays for the Avalanche import): a message, no traceback."""
    root, _ = make_root(tmp_path / "data", labels=np.zeros(40, dtype=int))
    code, out, err = cli("run", "--stream", "split-mnist", "--data-root", root, "--epochs", "1",
                         "--out", tmp_path / "run")
    assert code == 2, err
    assert "train-labels-idx1-ubyte: MNIST needs all 10 classes" in err
    assert "Traceback" not in err
    assert not (tmp_path / "run").exists()  # nothing was written for a run that could not start
