"""The CUDA backend's host side (Numba's CUDA target, ``numba-cuda``): one layer whose weights and SGD state live
on the GPU, and the launches of the kernels in :mod:`.cuda_device`.

Training runs every SGD step of a call in one launch: the dense kernel reads every pixel, for any batch size;
the sparse kernel reads only the non-zero ones, in one block, for batches up to 64 (the small batches that need
it most); the grid kernel spreads larger batches over the whole GPU. :class:`CudaLinear` picks the sparse kernel,
else the grid kernel where they apply, else the dense one. Under ``NUMBA_ENABLE_CUDASIM=1`` Numba runs the same
kernels as Python threads on the CPU: slowly, but exactly, which is how the tests check them without a GPU
(``tests/test_cuda.py``); ``tests/test_cuda_compiles.py`` compiles them for an H100 and checks that their blocks
fit one.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from numba import config, cuda

from ..data.pipeline import batch_starts
from ..data.sparse import MAX_COLUMNS, SparseRows
from ..errors import first_line
from . import cuda_device
from .llvm import compile_report

#: Threads of a block of the dense, grid and inference kernels, and of the sparse kernel's block (whole warps of
#: 32): at most 65,536 registers per multiprocessor divided by the registers a thread uses
#: (``tests/test_cuda_compiles.py`` checks it). The simulator runs every thread as a Python thread, so it gets few.
THREADS = 32 if config.ENABLE_CUDASIM else 256
SPARSE_THREADS = 32 if config.ENABLE_CUDASIM else 512
#: Which training kernel :class:`CudaLinear` runs: "auto" (sparse, else grid, where they apply), or one of them.
KERNELS = ("auto", "dense", "sparse", "grid")


def available() -> bool:
    """Whether a CUDA GPU is there (or Numba's simulator stands in for one)."""
    return cuda.is_available()


@dataclass(frozen=True)
class DeviceImages:
    """Images on the GPU in the forms the kernels read: ``dense`` (n, D) as they are and, for the sparse and grid
    kernels, the CSR rows of their non-zero entries (:class:`~lr_from_scratch.data.sparse.SparseRows`: ``indptr``
    as int64, ``indices`` uint16, ``values``), or None for images only ever evaluated."""

    dense: object
    indptr: object = None
    indices: object = None
    values: object = None

    @classmethod
    def from_host(cls, images: np.ndarray, sparse: bool = True) -> DeviceImages:
        dense = cuda.to_device(np.ascontiguousarray(images))
        if not sparse or images.shape[1] > MAX_COLUMNS:
            return cls(dense)
        rows = SparseRows.from_dense(images)
        return cls(dense, *(cuda.to_device(a) for a in (rows.indptr.astype(np.int64), rows.indices, rows.values)))

    @property
    def sparse(self) -> bool:
        return self.indptr is not None


class CudaLinear:
    """A (K, D) linear layer and its SGD state on the GPU, on inputs ``x = a * values + c``: the interface of
    :class:`~lr_from_scratch.kernels.fused.FoldedLinear` (``nn.Linear``'s layout), its arrays on the device.

    ``kernel`` (one of :data:`KERNELS`) says which training kernel runs; the benchmarks set it to compare them.
    """

    def __init__(self, weight: np.ndarray, bias: np.ndarray, a: float, c: float, momentum: float = 0.0,
                 dampening: float = 0.0, weight_decay: float = 0.0, nesterov: bool = False):  # fmt: skip
        self.dtype = weight.dtype
        t = self.dtype.type
        self.a, self.c = t(a), t(c)
        self.options = (t(momentum), t(1 - dampening), t(weight_decay), bool(nesterov))
        self.W, self.b = cuda.to_device(weight), cuda.to_device(bias.reshape(1, -1))
        self.bufW, self.bufb = cuda.to_device(np.zeros_like(weight)), cuda.to_device(np.zeros((1, len(bias)), t))
        self.first = cuda.to_device(np.ones(1, dtype=np.bool_))
        self.kernel = "auto"

    def params(self) -> tuple[np.ndarray, np.ndarray]:
        return self.W.copy_to_host(), self.b.copy_to_host()[0]

    def set_params(self, weight: np.ndarray, bias: np.ndarray) -> None:
        self.W.copy_to_device(np.ascontiguousarray(weight, dtype=self.dtype))
        self.b.copy_to_device(np.asarray(bias, dtype=self.dtype).reshape(1, -1))

    def buffers(self) -> tuple[np.ndarray, np.ndarray] | None:
        if self.first.copy_to_host()[0]:
            return None
        return self.bufW.copy_to_host(), self.bufb.copy_to_host()[0]

    def set_buffers(self, buffers: tuple[np.ndarray, np.ndarray] | None) -> None:
        self.first.copy_to_device(np.array([buffers is None]))
        weight_buffer, bias_buffer = (np.zeros(self.W.shape), np.zeros(self.b.shape)) if buffers is None else buffers
        self.bufW.copy_to_device(np.ascontiguousarray(weight_buffer, dtype=self.dtype))
        self.bufb.copy_to_device(np.asarray(bias_buffer, dtype=self.dtype).reshape(1, -1))

    def sparse_fits(self, batch_size: int) -> bool:
        """Whether the sparse kernel takes batches of ``batch_size`` on this layer (given images with CSR rows)."""
        n_classes, n_pixels = self.W.shape
        limits = cuda_device.MAX_BATCH, cuda_device.MAX_CLASSES, cuda_device.MAX_PIXELS
        return all(size <= limit for size, limit in zip((batch_size, n_classes, n_pixels), limits, strict=True))

    def kernel_for(self, images: DeviceImages, batch_size: int) -> str:
        """The training kernel for ``images`` in batches of at most ``batch_size``: ``self.kernel``, with "auto"
        resolved to the sparse kernel where it applies, else the grid kernel where it applies, else the dense one."""
        sparse = images.sparse and self.sparse_fits(batch_size)
        grid = images.sparse and self.W.shape[0] <= cuda_device.MAX_CLASSES
        if (self.kernel == "sparse" and not sparse) or (self.kernel == "grid" and not grid):
            raise ValueError(f"the {self.kernel} kernel cannot take batches of {batch_size} on a {self.W.shape} layer")
        if self.kernel != "auto":
            return self.kernel
        return "sparse" if sparse else "grid" if grid and grid_unavailable() is None else "dense"

    def train_steps(self, images: DeviceImages, labels, order, batches: list[slice], lr: float) -> tuple[float, int]:
        """SGD steps on the batches ``order[s]`` for each slice ``s`` of ``batches`` (``images``, ``labels`` and
        ``order`` on the device), all in one launch. Returns (loss sum, correct) over the steps' samples."""
        starts = batch_starts(batches)
        kernel, (blocks, *rest), args = self.launch(images, labels, order, starts, int(np.diff(starts).max()), lr)
        if kernel is cuda_device.train_steps_grid:  # a cooperative grid: every block resident at once
            blocks = min(blocks, co_resident_blocks(kernel, args, rest[0]))
        kernel[(blocks, *rest)](*args)
        loss, correct = args[-2:]
        return float(loss.copy_to_host().sum()), int(correct.copy_to_host().sum())

    def launch(self, images: DeviceImages, labels, order, starts: np.ndarray, largest: int, lr: float):
        """``(kernel, launch configuration, arguments)`` of the training launch: the dense, sparse or grid kernel,
        the steps' scratch and outputs allocated (the last two arguments: each step's loss sum and correct count).
        The grid kernel's configuration asks for a block per THREADS threads of work; :meth:`train_steps` caps it."""
        n_classes, n_pixels = self.W.shape

        def empty(shape, dtype=self.dtype):
            return cuda.device_array(shape, dtype=dtype)

        common = (labels, order, cuda.to_device(starts), self.a, self.c, self.W, self.b, self.bufW, self.bufb,
                  self.first, self.dtype.type(lr), *self.options)  # fmt: skip
        out = (empty(len(starts) - 1, np.float64), empty(len(starts) - 1, np.int64))
        csr = (images.dense, images.indptr, images.indices, images.values)
        kind = self.kernel_for(images, largest)
        if kind == "dense":
            scratch = (empty((largest, n_classes)), empty(n_classes), empty(largest, np.float64),
                       empty(largest, np.int64))  # fmt: skip
            return cuda_device.train_steps_dense, (1, THREADS), (images.dense, *common, *scratch, *out)
        if kind == "grid":
            _whole_warps("grid", THREADS, "THREADS")
            chunks = -(-largest // cuda_device.CHUNK)
            scratch = (empty((n_pixels, n_classes)), empty((largest, n_classes)),  # Wt, g
                       empty(largest, np.float64), empty(largest, np.int64),  # each sample's loss and correct
                       empty((chunks, n_classes, n_pixels + 1)), empty(chunks, np.float64), empty(chunks, np.int64),
                       empty(n_classes), empty(n_classes), empty(n_classes * cuda_device.WORD))  # fmt: skip
            work = max(largest * cuda_device.WORD, chunks * (n_pixels + 1))  # threads phases 1 and 2 keep busy
            grid_args = (*csr, *common, cuda_device.CHUNK, *scratch, *out)
            return cuda_device.train_steps_grid, (-(-work // THREADS), THREADS), grid_args
        _whole_warps("sparse", SPARSE_THREADS, "SPARSE_THREADS")
        Wt = empty((n_pixels, n_classes))
        return cuda_device.train_steps_sparse, (1, SPARSE_THREADS), (*csr, *common, Wt, *out)

    def evaluate(self, images: DeviceImages, labels) -> tuple[float, float, np.ndarray]:
        """``(mean loss, accuracy, predictions)`` over every row (``images`` and ``labels`` on the device)."""
        kernel, blocks, args = self.evaluation(images, labels)
        kernel[blocks](*args)
        loss, predictions = (array.copy_to_host() for array in args[-2:])
        n = len(predictions)
        return float(loss.sum()) / n, float((predictions == labels.copy_to_host()).mean()), predictions

    def evaluation(self, images: DeviceImages, labels):
        """``(kernel, launch configuration, arguments)`` of inference: a thread per image, the last two arguments
        its outputs (each image's loss and prediction)."""
        n = images.dense.shape[0]
        out = (cuda.device_array(n, dtype=np.float64), cuda.device_array(n, dtype=np.int64))
        blocks = ((n + THREADS - 1) // THREADS, THREADS)
        return cuda_device.evaluate, blocks, (images.dense, labels, self.a, self.c, self.W, self.b, *out)


def _whole_warps(kernel: str, threads: int, name: str) -> None:
    """Refuse a block of ``threads`` threads (the constant ``name``) for ``kernel`` unless they are whole warps: its
    warps add up their lanes' sums by shuffles, which need every lane."""
    if threads % cuda_device.WORD:
        raise ValueError(f"the {kernel} kernel runs on whole warps of {cuda_device.WORD} threads, not on "
                         f"{name} = {threads}")  # fmt: skip


@functools.cache
def grid_unavailable() -> str | None:
    """Why the grid kernel cannot run here, or None. Its grid-wide barrier calls CUDA's device runtime
    (``libcudadevrt``), which Numba links at the first launch and a CUDA installation may lack; then "auto" runs
    the dense kernel instead, and :class:`~lr_from_scratch.backends.CudaBackend` says so. Found out once, by a
    launch on a two-image problem."""
    layer = CudaLinear(np.zeros((2, 2), np.float32), np.zeros(2, np.float32), 1.0, 0.0)
    layer.kernel = "grid"
    two = cuda.to_device(np.arange(2))
    try:
        layer.train_steps(DeviceImages.from_host(np.eye(2, dtype=np.float32)), two, two, [slice(0, 2)], 0.1)
    except Exception as exc:  # a link or launch error, whatever its class in this numba-cuda
        return first_line(exc)
    return None


def co_resident_blocks(kernel, args, threads: int) -> int:
    """How many blocks of ``threads`` threads of ``kernel`` on ``args`` fit on the GPU at once: the most a
    cooperative grid may have (its barriers wait for every block). The simulator runs one."""
    if config.ENABLE_CUDASIM:
        return 1
    compiled = kernel.compile(tuple(kernel.typeof_pyval(arg) for arg in args))
    return compiled.max_cooperative_grid_blocks(threads)


def warm_up(dtype: str | np.dtype, values_dtype: str | np.dtype = np.uint8) -> tuple[float, bool]:
    """Compile the kernels for ``dtype`` weights and ``values_dtype`` images on a tiny problem, before anything is
    timed; returns ``(seconds, compiled)``."""

    def run():
        layer = CudaLinear(np.zeros((3, 4), dtype=dtype), np.zeros(3, dtype=dtype), 0.5, -0.1, 0.9, 0, 1e-4, True)
        images = DeviceImages.from_host(np.eye(4, dtype=values_dtype))
        labels, order = cuda.to_device(np.arange(4) % 3), cuda.to_device(np.arange(4))
        for kernel in KERNELS[1:] if grid_unavailable() is None else ("dense", "sparse"):
            layer.kernel = kernel
            layer.train_steps(images, labels, order, [slice(0, 2), slice(2, 4)], 0.1)
        layer.evaluate(images, labels)

    kernels = (cuda_device.train_steps_dense, cuda_device.train_steps_sparse, cuda_device.train_steps_grid)
    return compile_report((*kernels, cuda_device.evaluate), run)
