"""The real dataset, the layouts it is found in, and what happens when a file on disk is bad."""

from __future__ import annotations

import gzip
import shutil

import numpy as np
import pytest

from lr_from_scratch.data import load_mnist, scale_images
from lr_from_scratch.data.idx import encode_idx
from lr_from_scratch.errors import DataError

from .conftest import assert_one_line_error, run_module

TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_real_dataset_counts_histogram_and_pixel_statistics(mnist):
    assert mnist.train_images.shape == (60_000, 28, 28) and mnist.train_images.dtype == np.uint8
    assert mnist.test_images.shape == (10_000, 28, 28)
    assert np.bincount(mnist.train_labels).tolist() == TRAIN_COUNTS
    assert np.bincount(mnist.test_labels).tolist() == TEST_COUNTS
    x = scale_images(mnist.train_images, 0.0, 1.0, "float64")
    assert x.mean() == pytest.approx(0.1307, abs=5e-5)  # the normalisation constants are these figures
    assert x.std() == pytest.approx(0.3081, abs=5e-5)
    assert (mnist.train_images == 0).mean() == pytest.approx(0.81, abs=0.01)


def copy_files(src, dest, compress=False):
    dest.mkdir(parents=True, exist_ok=True)
    for path in sorted(src.glob("*-ubyte")):
        if compress:
            (dest / (path.name + ".gz")).write_bytes(gzip.compress(path.read_bytes(), compresslevel=1))
        else:
            shutil.copy(path, dest / path.name)


def test_torchvision_layout_with_gzipped_files_is_reused(mnist, mnist_dir, tmp_path):
    copy_files(mnist_dir, tmp_path / "MNIST" / "raw", compress=True)
    again = load_mnist(tmp_path, download=False)
    np.testing.assert_array_equal(again.test_images, mnist.test_images)
    np.testing.assert_array_equal(again.train_labels, mnist.train_labels)


def test_data_dir_from_environment(mnist_dir, tmp_path, monkeypatch):
    copy_files(mnist_dir, tmp_path)
    monkeypatch.setenv("LR_FROM_SCRATCH_DATA", str(tmp_path))
    from lr_from_scratch.data import default_data_dir

    assert default_data_dir() == tmp_path
    assert load_mnist(download=False).test_labels.shape == (10_000,)


def test_missing_files_without_download(tmp_path):
    with pytest.raises(DataError, match="MNIST files missing from .*train-images-idx3-ubyte"):
        load_mnist(tmp_path, download=False)


def damaged_copy(mnist_dir, tmp_path, name, damage):
    """A data folder where file ``name`` has been rewritten by ``damage(bytes) -> bytes``."""
    copy_files(mnist_dir, tmp_path)
    path = tmp_path / name
    path.write_bytes(damage(path.read_bytes()))
    return tmp_path


def flip_last_byte(data: bytes) -> bytes:
    return data[:-1] + bytes([data[-1] ^ 0xFF])


def label_ten(data: bytes) -> bytes:
    labels = np.frombuffer(data, np.uint8, offset=8).copy()
    labels[123] = 10
    return encode_idx(labels)


BAD_FILES = {
    "checksum": ("t10k-images-idx3-ubyte", flip_last_byte, "checksum mismatch for t10k-images-idx3-ubyte: MD5"),
    "truncated": ("t10k-images-idx3-ubyte", lambda d: d[:5000], "truncated: 5000 bytes, expected 7840016"),
    "magic": ("t10k-labels-idx1-ubyte", lambda d: b"\x00\x00\x08\x03" + d[4:], "wrong magic number 2051"),
    "label": ("train-labels-idx1-ubyte", label_ten, "label 10 out of range, expected 0..9"),
    "count": (
        "t10k-labels-idx1-ubyte",
        lambda d: encode_idx(np.frombuffer(d, np.uint8, offset=8)[:9999].copy()),
        "9999 items, expected 10000",
    ),
    "gzip": ("t10k-labels-idx1-ubyte.gz", lambda d: d[:100], "not a valid gzip file"),
}


@pytest.mark.parametrize("case", BAD_FILES)
def test_bad_file_on_disk_is_one_line_and_exit_1(mnist_dir, tmp_path, case):
    name, damage, expected = BAD_FILES[case]
    data_dir = tmp_path / "data"
    if name.endswith(".gz"):
        copy_files(mnist_dir, data_dir)
        plain = data_dir / name.removesuffix(".gz")
        (data_dir / name).write_bytes(damage(gzip.compress(plain.read_bytes())))
        plain.unlink()
    else:
        damaged_copy(mnist_dir, data_dir, name, damage)
    result = run_module(
        "lr_from_scratch.train", "--data-dir", str(data_dir), "--out", str(tmp_path / "run"), "--no-progress"
    )
    assert_one_line_error(result, 1, expected)
    assert not (tmp_path / "run").exists()
