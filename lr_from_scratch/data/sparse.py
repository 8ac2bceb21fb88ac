"""Images as compressed sparse rows (CSR): the non-zero pixels only, as the Numba kernels read them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

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
        """CSR of a dense (n, D) array (or (n, 28, 28)); zeros are dropped, the other values kept as they are."""
        x = np.ascontiguousarray(x.reshape(len(x), -1))
        _check_width(x.shape[1])
        mask = x != 0
        indptr = np.zeros(len(x) + 1, dtype=np.uint64)
        np.cumsum(mask.sum(axis=1), out=indptr[1:])
        return cls(indptr, np.nonzero(mask)[1].astype(np.uint16), x[mask])

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
