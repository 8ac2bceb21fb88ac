"""The IDX file format of MNIST: parse and write, with every header field checked.

An IDX file is a big-endian header followed by raw data::

    bytes 0-1   zero
    byte  2     element type (0x08 = unsigned byte)
    byte  3     number of dimensions n
    then n      big-endian uint32 sizes
    then        prod(sizes) elements, row-major

So the magic number (the first four bytes as one big-endian integer) is 2049 = 0x00000801 for a label file
(one dimension) and 2051 = 0x00000803 for an image file (three dimensions: count, rows, columns).
"""

from __future__ import annotations

import gzip
import math
import struct
import zlib

import numpy as np

from ..errors import DataError

UBYTE = 0x08
LABELS_MAGIC = 2049
IMAGES_MAGIC = 2051


def parse_idx(data: bytes, name: str = "IDX data", expected_magic: int | None = None) -> np.ndarray:
    """Parse the bytes of one uncompressed IDX file of unsigned bytes.

    Parameters
    ----------
    data : bytes
        The whole file.
    name : str
        Used in error messages (usually the file's path).
    expected_magic : int, optional
        :data:`LABELS_MAGIC` or :data:`IMAGES_MAGIC`; any other magic number is then an error.

    Returns
    -------
    numpy.ndarray of uint8, shape ``sizes`` from the header (read-only view over ``data``).
    """
    if len(data) < 4:
        raise DataError(f"{name}: {len(data)} bytes is too short for an IDX header (expected at least 4)")
    zero, dtype_code, ndim = struct.unpack(">HBB", data[:4])
    magic = int.from_bytes(data[:4], "big")
    if expected_magic is not None and magic != expected_magic:
        raise DataError(
            f"{name}: wrong magic number {magic} (0x{magic:08x}), expected {expected_magic} "
            f"(0x{expected_magic:08x}): is it the right file? Re-download it"
        )
    if zero != 0 or dtype_code != UBYTE or ndim == 0:
        raise DataError(
            f"{name}: wrong magic number {magic} (0x{magic:08x}), expected an unsigned-byte IDX file "
            f"such as {LABELS_MAGIC} (labels) or {IMAGES_MAGIC} (images): re-download the file"
        )
    header_len = 4 + 4 * ndim
    if len(data) < header_len:
        raise DataError(f"{name}: truncated header ({len(data)} bytes, expected {header_len})")
    sizes = struct.unpack(f">{ndim}I", data[4:header_len])
    expected = header_len + math.prod(sizes)  # Python ints: a crafted header cannot wrap the product around
    if len(data) != expected:
        kind = "truncated" if len(data) < expected else "has trailing bytes"
        raise DataError(
            f"{name}: {kind}: {len(data)} bytes, expected {expected} for shape {sizes}: re-download the file"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header_len).reshape(sizes)


def encode_idx(array: np.ndarray) -> bytes:
    """The IDX bytes of a uint8 array (the inverse of :func:`parse_idx`)."""
    if array.dtype != np.uint8:
        raise TypeError(f"IDX writing supports uint8 only, got {array.dtype}")
    header = struct.pack(f">HBB{array.ndim}I", 0, UBYTE, array.ndim, *array.shape)
    return header + np.ascontiguousarray(array).tobytes()


def decompress(data: bytes, name: str) -> bytes:
    """Gunzip ``data``; a truncated or corrupted archive raises :class:`DataError`."""
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{name}: not a valid gzip file ({exc}): re-download it") from None


def check_images(
    images: np.ndarray, name: str, shape: tuple[int, int] | None = (28, 28), max_pixels: int | None = None
) -> np.ndarray:
    """Check that ``images`` has shape (n, h, w): (n, 28, 28) by default; with ``shape`` None any h and w, with
    at most ``max_pixels`` pixels."""
    if shape is not None and (images.ndim != 3 or images.shape[1:] != shape):
        raise DataError(f"{name}: image shape {images.shape}, expected (n, {shape[0]}, {shape[1]})")
    if images.ndim != 3 or images.shape[1] * images.shape[2] == 0:
        raise DataError(f"{name}: image shape {images.shape}, expected (n, height, width)")
    if len(images) == 0:
        raise DataError(f"{name}: no images (shape {images.shape}), expected at least one")
    if max_pixels is not None and images.shape[1] * images.shape[2] > max_pixels:
        raise DataError(
            f"{name}: images of {images.shape[1]} x {images.shape[2]} = {images.shape[1] * images.shape[2]:,} "
            f"pixels, expected at most {max_pixels:,} pixels an image: downscale them"
        )
    return images


def check_labels(labels: np.ndarray, name: str, n_classes: int = 10) -> np.ndarray:
    """Check that ``labels`` is one-dimensional with every value in 0..n_classes-1."""
    if labels.ndim != 1 or labels.size == 0:
        raise DataError(f"{name}: label shape {labels.shape}, expected (n,) with at least one label")
    if labels.size and labels.max() >= n_classes:
        bad = int(labels.max())
        raise DataError(f"{name}: label {bad} out of range, expected 0..{n_classes - 1}: re-download the file")
    return labels
