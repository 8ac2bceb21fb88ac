"""Images as compressed sparse rows (CSR): the non-zero pixels only, as the Numba kernels read them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit, prange

from ..kernels.llvm import CACHE, compile_report

#: The most columns (features, pixels) a row can have: column numbers are stored as uint16.
MAX_COLUMNS = int(np.iinfo(np.uint16).max)


@dataclass(frozen=True)
class SparseRows:
    """Row ``i``'s non-zero pixels are ``indices[indptr[i]:indptr[i+1]]`` with values ``values[...]``.

    Attributes
    ----------
    indptr : uint64 (n + 1,), row offsets. Unsigned, because the kernels' pixel loops are written for unsigned
        offsets (an unsigned index needs no negative-index check); any integer offsets are converted.
    indices : uint16 (nnz,), column numbers
    values : uint8 or float (nnz,), the pixels as they are (no scaling)
    """

    indptr: np.ndarray
    indices: np.ndarray
    values: np.ndarray

    def __post_init__(self):
        object.__setattr__(self, "indptr", np.asarray(self.indptr, dtype=np.uint64))

    @classmethod
    def from_dense(cls, x: np.ndarray) -> SparseRows:
        """CSR of a dense (n, D) array (or (n, 28, 28)); zeros are dropped, the other values kept as they are.

        Two compiled passes over ``x``, one to count each row's non-zeros, one to copy them, and no temporary
        the size of ``x``: NumPy's ``np.nonzero`` route was several times slower (``docs/fast.md`` has the
        figures) and made eight bytes of row number and eight of column number for every non-zero.
        """
        x = np.ascontiguousarray(x.reshape(len(x), -1))
        _check_width(x.shape[1])
        indptr = np.zeros(len(x) + 1, dtype=np.int64)
        parts = {}

        def convert():
            _count_nonzeros(x, indptr[1:])
            np.cumsum(indptr, out=indptr)
            parts["indices"] = np.empty(indptr[-1], dtype=np.uint16)
            parts["values"] = np.empty(indptr[-1], dtype=x.dtype)
            _copy_nonzeros(x, indptr, parts["indices"], parts["values"])

        compile_report((_count_nonzeros, _copy_nonzeros), convert)  # a damaged cache is one line, not a traceback
        return cls(indptr, parts["indices"], parts["values"])

    @classmethod
    def from_features(cls, x) -> SparseRows:
        """The rows of a dense array or a ``scipy.sparse`` matrix (n, D), values as they are."""
        return cls.from_csr(x) if hasattr(x, "tocsr") else cls.from_dense(x)

    @classmethod
    def from_csr(cls, x) -> SparseRows:
        """The rows of a ``scipy.sparse`` matrix (n, D) as they are, without a dense copy."""
        _check_width(x.shape[1])
        x = x.tocsr()
        if not x.has_canonical_format:  # one entry per (row, column), as from_dense gives; the caller's is kept
            x = x.copy()
            x.sum_duplicates()
        return cls(x.indptr, x.indices.astype(np.uint16), x.data)

    def __len__(self) -> int:
        return len(self.indptr) - 1


def _check_width(n_columns: int) -> None:
    if n_columns > MAX_COLUMNS:
        raise ValueError(f"{n_columns} features, at most {MAX_COLUMNS} supported")


@njit(cache=CACHE, parallel=True)
def _count_nonzeros(x, counts):
    """``counts[i]``: the number of non-zero entries in row ``i`` of ``x`` (n, D)."""
    for i in prange(x.shape[0]):
        count = 0
        for j in range(x.shape[1]):
            count += x[i, j] != 0
        counts[i] = count


@njit(cache=CACHE, parallel=True)
def _copy_nonzeros(x, indptr, indices, values):
    """Row ``i``'s non-zero entries of ``x`` (n, D), in column order: their columns into
    ``indices[indptr[i]:indptr[i+1]]`` and their values into ``values[...]``."""
    for i in prange(x.shape[0]):
        k = indptr[i]
        for j in range(x.shape[1]):
            value = x[i, j]
            if value != 0:
                indices[k] = j
                values[k] = value
                k += 1
