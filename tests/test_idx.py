"""The IDX parser and writer on small synthetic files."""

from __future__ import annotations

import contextlib
import gzip
import struct

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes, arrays

from lr_from_scratch.data.idx import (
    IMAGES_MAGIC,
    LABELS_MAGIC,
    UBYTE,
    check_images,
    check_labels,
    decompress,
    encode_idx,
    parse_idx,
)
from lr_from_scratch.errors import DataError


def test_header_layout_matches_the_format():
    images = np.arange(2 * 28 * 28, dtype=np.uint8).reshape(2, 28, 28)
    data = encode_idx(images)
    assert struct.unpack(">IIII", data[:16]) == (IMAGES_MAGIC, 2, 28, 28)
    assert len(data) == 16 + images.size
    labels = encode_idx(np.array([3, 1, 4], dtype=np.uint8))
    assert struct.unpack(">II", labels[:8]) == (LABELS_MAGIC, 3)


@given(arrays(np.uint8, array_shapes(min_dims=1, max_dims=4, max_side=6)))
def test_parse_inverts_encode(array):
    parsed = parse_idx(encode_idx(array))
    assert parsed.dtype == np.uint8
    np.testing.assert_array_equal(parsed, array)


def test_wrong_magic_names_got_and_expected():
    data = encode_idx(np.zeros(5, dtype=np.uint8))
    with pytest.raises(DataError, match=r"wrong magic number 2049 \(0x00000801\), expected 2051"):
        parse_idx(data, "labels-as-images", expected_magic=IMAGES_MAGIC)


@pytest.mark.parametrize("first_bytes", [b"\x01\x00\x08\x01", b"\x00\x00\x0d\x01", b"\x00\x00\x08\x00"])
def test_not_an_unsigned_byte_idx_file(first_bytes):
    with pytest.raises(DataError, match="wrong magic number"):
        parse_idx(first_bytes + b"\x00" * 8)


def test_truncated_and_padded_files():
    data = encode_idx(np.ones((3, 28, 28), dtype=np.uint8))
    with pytest.raises(DataError, match=r"truncated: 2000 bytes, expected 2368"):
        parse_idx(data[:2000], "short")
    with pytest.raises(DataError, match="trailing bytes"):
        parse_idx(data + b"\x00", "long")
    with pytest.raises(DataError, match="truncated header"):
        parse_idx(data[:10], "header")
    with pytest.raises(DataError, match="too short"):
        parse_idx(b"\x00\x00", "tiny")


def test_truncated_gzip_is_a_data_error():
    archive = gzip.compress(encode_idx(np.arange(100, dtype=np.uint8)))
    assert decompress(archive, "ok") == encode_idx(np.arange(100, dtype=np.uint8))
    with pytest.raises(DataError, match="not a valid gzip file"):
        decompress(archive[: len(archive) // 2], "half.gz")
    with pytest.raises(DataError, match="not a valid gzip file"):
        decompress(b"plainly not gzip", "junk.gz")


def test_label_range_and_image_shape_checks():
    check_labels(np.array([0, 9, 5], dtype=np.uint8), "ok")
    with pytest.raises(DataError, match="label 10 out of range, expected 0..9"):
        check_labels(np.array([0, 10], dtype=np.uint8), "bad")
    with pytest.raises(DataError, match=r"image shape \(2, 28, 27\), expected \(n, 28, 28\)"):
        check_images(np.zeros((2, 28, 27), dtype=np.uint8), "bad")


def test_a_header_whose_sizes_overflow_64_bits_is_a_truncated_file():
    """2**31 x 2**31 x 4 bytes is 2**64: a 64-bit product wraps to 0 and would match the empty body."""
    data = struct.pack(">HBB3I", 0, UBYTE, 3, 2**31, 2**31, 4)
    with pytest.raises(DataError, match=r"truncated: 16 bytes, expected 18446744073709551632"):
        parse_idx(data, "crafted")


@given(st.binary(max_size=64))
def test_arbitrary_bytes_never_crash_the_parser(data):
    with contextlib.suppress(DataError):
        parse_idx(data)
