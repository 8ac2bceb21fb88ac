"""The datasets: the real MNIST, the layouts it is found in, datasets of your own and named ones, and what
happens when a file on disk is bad."""

from __future__ import annotations

import dataclasses
import gzip
import json
import os
import shlex
import shutil
import subprocess
from signal import SIGINT

import numpy as np
import pytest

from lr_from_scratch.data import MNIST_MEAN, MNIST_STD, load_dataset, load_mnist, scale_images
from lr_from_scratch.data.idx import encode_idx
from lr_from_scratch.errors import DataError
from lr_from_scratch.runs import RunFolder
from lr_from_scratch.saved import load_model
from lr_from_scratch.train import main

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


def test_the_default_folder_ignores_what_the_environment_cannot_mean(tmp_path, monkeypatch):
    """A blank $LR_FROM_SCRATCH_DATA was taken as a folder named ' '; a relative $XDG_CACHE_HOME ('~x', unexpanded
    by a shell) as a folder under the working one, which the XDG specification says to ignore."""
    from lr_from_scratch.data import default_data_dir
    from lr_from_scratch.errors import ConfigError

    monkeypatch.delenv("LR_FROM_SCRATCH_DATA", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    for relative in ("~nosuchuser", "cache"):
        monkeypatch.setenv("XDG_CACHE_HOME", relative)
        assert default_data_dir() == tmp_path / ".cache" / "lr-from-scratch" / "mnist"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_data_dir("fashion-mnist") == tmp_path / "xdg" / "lr-from-scratch" / "fashion-mnist"
    monkeypatch.setenv("LR_FROM_SCRATCH_DATA", " ")
    with pytest.raises(ConfigError, match=r"^\$LR_FROM_SCRATCH_DATA is ' ': expected a folder; set one, or unset it"):
        default_data_dir()


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


def test_the_normalisation_constants_are_the_training_sets_own(mnist):
    assert mnist.scaling == (MNIST_MEAN, MNIST_STD)


def synthetic_idx(folder, n_classes=3, shape=(12, 10), n_train=600, n_test=150, gz=False, seed=0):
    """Four IDX files of a learnable set of our own: class k lights up its own band of rows, plus noise."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = np.arange(n) % n_classes
        images = rng.integers(0, 60, (n, *shape))
        for k in range(n_classes):
            images[labels == k, k * shape[0] // n_classes : (k + 1) * shape[0] // n_classes] += 150
        for kind, array in (("images-idx3", images), ("labels-idx1", labels)):
            data = encode_idx(array.astype(np.uint8))
            name = f"{prefix}-{kind}-ubyte"
            (folder / (name + ".gz" if gz else name)).write_bytes(gzip.compress(data) if gz else data)
    return folder


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_a_dataset_of_your_own_trains_and_evaluates(tmp_path, backend):
    data = synthetic_idx(tmp_path / "idx", gz=backend == "numpy")
    run = run_module("lr_from_scratch.train", "--dataset", "idx", "--data-dir", str(data), "--epochs", "3",
                     "--backend", backend, "--out", str(tmp_path / "run"), "--no-progress")  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "540 train / 60 validation / 150 test samples" in run.stdout
    saved = load_model(tmp_path / "run")
    assert saved.weight.shape == (3, 120) and saved.config["dataset"] == "idx"
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["test_accuracy"] > 0.95
    evaluation = run_module("lr_from_scratch.evaluate", str(tmp_path / "run"), "--no-progress")  # the run's data
    assert evaluation.returncode == 0, evaluation.stderr
    report = (tmp_path / "run" / "report.md").read_text()
    assert "On the 150 custom IDX data test images" in report and "| 2 |" in report and "| 3 |" not in report


def test_an_interrupted_run_on_your_own_dataset_resumes_with_the_command_it_printed(tmp_path, capsys, monkeypatch):
    """The run records its --data-dir (absolute: the resume may start elsewhere), and the "Continue with" line
    names the Python that ran it: typed as printed, from another folder, it finishes the run with the weights of
    one never interrupted."""
    data = synthetic_idx(tmp_path / "idx")
    monkeypatch.chdir(tmp_path)
    args = ["--dataset", "idx", "--data-dir", "idx", "--epochs", "3", "--backend", "numpy", "--no-progress"]
    end_epoch = RunFolder.end_epoch
    with monkeypatch.context() as patch:
        patch.setattr(RunFolder, "end_epoch", lambda self, *a: (end_epoch(self, *a), os.kill(os.getpid(), SIGINT)))
        assert main([*args, "--out", str(tmp_path / "stopped")]) == 130
    printed = capsys.readouterr().err.split("Continue with: ")[1].strip()
    (tmp_path / "elsewhere").mkdir()
    resumed = subprocess.run(shlex.split(printed), cwd=tmp_path / "elsewhere", capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert main([*args[:2], "--data-dir", str(data), *args[4:], "--out", str(tmp_path / "whole")]) == 0
    np.testing.assert_array_equal(load_model(tmp_path / "stopped").weight, load_model(tmp_path / "whole").weight)


BAD_SETS = {
    "no data folder": (None, [], 2, "the idx dataset needs --data-dir"),
    "missing files": ("empty", [], 1, "custom IDX data files missing from"),
    "count mismatch": ("short-labels", [], 1, "149 test images but 150 labels"),
    "size mismatch": ("sizes", [], 1, "training images of (12, 10) pixels, test images of (10, 12)"),
    "more classes than lanes": ("twenty", [], 2, "has 20 classes; --backend numba takes at most 16"),
    "fashion by hand": ("fm-plain", ["--dataset", "fashion-mnist"], 1, "only the .gz of"),
    "no test images": ("no-test", [], 1, "expected at least one"),
    "one class": ("one-class", [], 1, "every training label is 0; a classifier needs two classes"),
    "constant pixels": ("blank", [], 1, "every training pixel is 0: there is nothing to learn from"),
    "images too large": ("large", [], 1, "256 x 257 = 65,792 pixels, expected at most 65,535 pixels an image"),
}


@pytest.mark.parametrize("case", BAD_SETS)
def test_a_bad_dataset_is_one_line(tmp_path, mnist_dir, case):
    folder, extra, code, expected = BAD_SETS[case]
    data = tmp_path / "data"
    if folder == "empty":
        data.mkdir()
    elif folder == "short-labels":
        synthetic_idx(data)
        images = np.frombuffer((data / "t10k-images-idx3-ubyte").read_bytes(), np.uint8, offset=16).reshape(150, 12, 10)
        (data / "t10k-images-idx3-ubyte").write_bytes(encode_idx(images[:149].copy()))
    elif folder == "sizes":
        synthetic_idx(data)
        synthetic_idx(tmp_path / "other", shape=(10, 12))
        shutil.copy(tmp_path / "other" / "t10k-images-idx3-ubyte", data)
    elif folder == "twenty":
        synthetic_idx(data, n_classes=20, shape=(20, 4))
    elif folder == "fm-plain":
        copy_files(mnist_dir, data)  # the right shapes, uncompressed: nothing published to check them against
    elif folder == "no-test":
        synthetic_idx(data, n_test=0)
    elif folder == "one-class":
        synthetic_idx(data, n_classes=1)
    elif folder == "blank":
        synthetic_idx(data)
        (data / "train-images-idx3-ubyte").write_bytes(encode_idx(np.zeros((600, 12, 10), np.uint8)))
    elif folder == "large":
        synthetic_idx(data, shape=(256, 257), n_train=4, n_test=2)
    args = ["--dataset", "idx"] + (["--data-dir", str(data)] if folder else []) + extra
    result = run_module("lr_from_scratch.train", *args, "--out", str(tmp_path / "run"), "--no-progress")
    assert_one_line_error(result, code, expected)
    assert not (tmp_path / "run").exists()


def test_a_named_dataset_is_checked_against_its_published_checksums(tmp_path, monkeypatch):
    """Fashion-MNIST and KMNIST publish the MD5 of their .gz files only: the loader keeps them compressed and
    checks them, and fetches them that way. (Their real files are not reachable from the test machines, so a
    stand-in with checksums of its own takes their place, through the same code.)"""
    from lr_from_scratch.data import datasets, sources

    from .test_sources import Mirror

    synthetic_idx(tmp_path / "made", gz=True)
    published = {p.name.removesuffix(".gz"): sources.md5(p.read_bytes()) for p in (tmp_path / "made").iterdir()}
    files = tuple(
        dataclasses.replace(f, archive_md5=published[f.name], count=None)
        for f in datasets.DATASETS["fashion-mnist"].files
    )
    server = Mirror()
    try:
        for path in (tmp_path / "made").iterdir():
            server.routes[f"/fm/{path.name}"] = (path.read_bytes(), "ok")
        spec = dataclasses.replace(
            datasets.DATASETS["fashion-mnist"], files=files, mirrors=(server.url("fm"),), image_shape=(12, 10)
        )
        monkeypatch.setitem(datasets.DATASETS, "fashion-mnist", spec)
        fetched = load_dataset("fashion-mnist", tmp_path / "fm", progress=False)
    finally:
        server.shutdown()
        server.server_close()
    assert sorted(p.name for p in (tmp_path / "fm").iterdir()) == sorted(p.name for p in (tmp_path / "made").iterdir())
    assert fetched.n_classes == 3 and fetched.name == "fashion-mnist"
    again = load_dataset("fashion-mnist", tmp_path / "fm", download=False)  # from disk, checked again
    np.testing.assert_array_equal(again.train_images, fetched.train_images)
    for archive in list((tmp_path / "fm").iterdir()):  # unpacked beside the archives (gunzip -k): still checked
        archive.with_suffix("").write_bytes(gzip.decompress(archive.read_bytes()))
    assert load_dataset("fashion-mnist", tmp_path / "fm", download=False).n_classes == 3
    archive = tmp_path / "fm" / "t10k-labels-idx1-ubyte.gz"
    archive.write_bytes(gzip.compress(gzip.decompress(archive.read_bytes()), compresslevel=1))  # same data, other bytes
    with pytest.raises(DataError, match="checksum mismatch for t10k-labels-idx1-ubyte.gz"):
        load_dataset("fashion-mnist", tmp_path / "fm", download=False)


def test_a_fetch_is_announced_even_without_progress_bars(tmp_path, capsys, monkeypatch, mnist_dir):
    """A mistyped --data-dir is a new, empty folder: one line says the files were fetched into it, --no-progress
    or not (here the fetch copies the cached files: no network)."""
    from lr_from_scratch.data import datasets

    def fetch(root, missing, *args, **kwargs):
        root.mkdir(parents=True)
        for file in missing:
            shutil.copy(mnist_dir / file.name, root / file.name)

    monkeypatch.setattr(datasets, "fetch_files", fetch)
    load_dataset("mnist", tmp_path / "typo", progress=False)
    assert capsys.readouterr().err == f"MNIST: fetched its 4 missing files into {tmp_path / 'typo'}\n"
