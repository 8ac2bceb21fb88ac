"""Locate MNIST on disk (fetching it once when missing) and load it as verified uint8 arrays."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DataError
from ..files import write_bytes
from .idx import check_images, check_labels, decompress, parse_idx
from .sources import FILES, MnistFile, fetch_mnist, verify_idx_bytes

DATA_DIR_ENV = "LR_FROM_SCRATCH_DATA"
TORCHVISION_SUBDIR = Path("MNIST") / "raw"


@dataclass(frozen=True)
class MNIST:
    """The four MNIST arrays, exactly as on disk.

    Attributes
    ----------
    train_images : uint8 array, shape (60000, 28, 28)
    train_labels : uint8 array, shape (60000,)
    test_images : uint8 array, shape (10000, 28, 28)
    test_labels : uint8 array, shape (10000,)
    """

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray

    @property
    def n_classes(self) -> int:
        """The number of classes, 10: labels run from 0 to the largest in the training set."""
        return int(self.train_labels.max()) + 1


def default_data_dir() -> Path:
    """``$LR_FROM_SCRATCH_DATA``, else ``$XDG_CACHE_HOME/lr-from-scratch/mnist`` (``~/.cache`` by default)."""
    if os.environ.get(DATA_DIR_ENV):
        return Path(os.environ[DATA_DIR_ENV]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "lr-from-scratch" / "mnist"


def resolve_data_dir(data_dir: str | os.PathLike | None) -> Path:
    """``data_dir`` as given (``~`` expanded), or :func:`default_data_dir` when None."""
    return Path(data_dir).expanduser() if data_dir is not None else default_data_dir()


def torchvision_layout(data_dir: str | os.PathLike | None) -> Path:
    """The data folder, with the four uncompressed files where ``torchvision.datasets.MNIST(root)`` reads them
    (``root/MNIST/raw/``), written once from the files :func:`load_mnist` verified there; returns the root.

    Call it after :func:`load_mnist` on the same folder. Raises :class:`DataError` if they cannot be written.
    """
    root = resolve_data_dir(data_dir)
    for file in FILES:
        target = root / TORCHVISION_SUBDIR / file.name
        if not target.is_file():
            source = find_file(root, file)
            data = source.read_bytes()
            try:
                write_bytes(target, decompress(data, str(source)) if source.suffix == ".gz" else data)
            except OSError as exc:
                raise DataError(
                    f"cannot write {target} for torchvision ({exc.strerror}); use a writable --data-dir"
                ) from None
    return root


def find_file(root: Path, file: MnistFile) -> Path | None:
    """The path of ``file`` under ``root`` or torchvision's ``root/MNIST/raw``, uncompressed or ``.gz``."""
    for folder in (root, root / TORCHVISION_SUBDIR):
        for name in (file.name, file.name + ".gz"):
            if (folder / name).is_file():
                return folder / name
    return None


def load_mnist(data_dir: str | os.PathLike | None = None, download: bool = True, progress: bool = True) -> MNIST:
    """Load MNIST from ``data_dir`` (default :func:`default_data_dir`), fetching missing files first.

    Every file is checked: gzip integrity, IDX magic number, size against the header, label range, count,
    and finally the official MD5 of the uncompressed bytes. Any failure raises :class:`DataError`.
    """
    root = resolve_data_dir(data_dir)
    if root.exists() and not root.is_dir():
        raise DataError(f"data folder {root} is a file, expected a folder holding the MNIST IDX files")
    missing = [f for f in FILES if find_file(root, f) is None]
    if missing:
        if not download:
            raise DataError(f"MNIST files missing from {root}: {', '.join(f.name for f in missing)}")
        fetch_mnist(root, missing, progress=progress)
    arrays = {f.key: read_mnist_file(find_file(root, f), f) for f in FILES}
    for split in ("train", "test"):
        n_images, n_labels = len(arrays[f"{split}_images"]), len(arrays[f"{split}_labels"])
        if n_images != n_labels:
            raise DataError(f"{root}: {n_images} {split} images but {n_labels} labels, expected equal counts")
    return MNIST(**arrays)


def read_mnist_file(path: Path, file: MnistFile) -> np.ndarray:
    """Read and verify one MNIST file (``.gz`` or not); see :func:`load_mnist`."""
    name = str(path)
    data = path.read_bytes()
    if path.suffix == ".gz":
        data = decompress(data, name)
    array = parse_idx(data, name, expected_magic=file.magic)
    if file.key.endswith("images"):
        check_images(array, name)
    else:
        check_labels(array, name)
    if len(array) != file.count:
        raise DataError(f"{name}: {len(array)} items, expected {file.count}: re-download the file")
    verify_idx_bytes(file, data, name)
    return array
