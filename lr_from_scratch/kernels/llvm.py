"""What the compiled kernels share: fast-math flags, the vectoriser setting, and a few small LLVM intrinsics.

Numba has no prefetch instruction, no way to build ``2^n`` from its bits and no atomic operations on the CPU, so
this module writes them as *intrinsics*: a few lines that emit the LLVM instructions directly. Under
``NUMBA_DISABLE_JIT=1`` (how ``make test`` first runs the kernel tests, so every line of them runs as Python)
they are plain functions that compute the same values, on one thread.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import platform
import time
import traceback
from pathlib import Path

import numba
from llvmlite import ir
from numba.core import caching, cgutils
from numba.core.caching import FunctionCache
from numba.extending import intrinsic

from ..errors import UserError

#: Fast-math flags for every kernel: all of them but ``nnan`` and ``ninf``, which would let LLVM delete
#: ``isfinite`` checks and break NaN propagation.
FASTMATH = {"nsz", "arcp", "contract", "afn", "reassoc"}
#: Classes are padded to this many lanes (one AVX-512 register of float32).
LANES = 16


#: The package's root: the kernels' source files are found from it.
_PACKAGE = Path(__file__).resolve().parent.parent


def kernel_sources() -> list[Path]:
    """Every source file a compiled kernel can be built from: this folder (the ``inline="always"`` helpers
    are compiled into the kernels that call them) and the data module whose conversion is compiled."""
    return sorted([*(_PACKAGE / "kernels").glob("*.py"), _PACKAGE / "data" / "sparse.py"])


def sources_digest() -> bytes:
    """SHA-256 over the names and contents of :func:`kernel_sources`."""
    digest = hashlib.sha256()
    for path in kernel_sources():
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.digest()


class _StampedByEverySource:
    """A Numba cache locator for our kernels whose source stamp is :func:`sources_digest`.

    Numba keys a function's cached machine code to its own file's contents only. An edit to a helper in
    another file (``lanes.py``, ``tasks.py``) would leave every kernel that inlines it stale: loaded from the
    cache, as if the edit had not been made. With this stamp, any edit to a kernel source compiles them all
    again. Other packages' functions go to Numba's own locators."""

    def get_source_stamp(self):
        return sources_digest()

    @classmethod
    def from_function(cls, py_func, py_file):
        if Path(py_file).resolve() not in kernel_sources():
            return None
        return super().from_function(py_func, py_file)


def _numba_name(name: str):
    """``numba.core.caching``'s ``name``: public in recent Numba, with a leading underscore in older ones."""
    return getattr(caching, name, None) or getattr(caching, "_" + name, None)


# Before any of the kernels is decorated: Numba picks the locator of a function as the decorator runs. A Numba
# whose caching module has other names keeps its own locators (each kernel stamped by its own file only).
_LOCATORS = [_numba_name(n) for n in ("CacheImpl", "UserProvidedCacheLocator", "InTreeCacheLocator",
                                      "UserWideCacheLocator")]  # fmt: skip
if all(_LOCATORS):
    _LOCATORS[0]._locator_classes[:0] = [
        type(f"StampedByEverySource{base.__name__.lstrip('_')}", (_StampedByEverySource, base), {})
        for base in _LOCATORS[1:]
    ]


def _can_cache() -> bool:
    """Whether Numba finds a writable folder for the kernels' machine code: ``$NUMBA_CACHE_DIR``, the package's
    ``__pycache__`` or the user's cache. Without one, ``cache=True`` would fail the import of every kernel; the
    kernels then compile in every process instead (``python -m lr_from_scratch.train`` says so)."""
    try:
        FunctionCache(_can_cache)  # any function of this folder: the same places apply to all
    except RuntimeError:
        return False
    return True


@contextlib.contextmanager
def slp_vectoriser():
    """While our kernels run (and so while they compile): LLVM's SLP vectoriser on.

    The per-pixel rows of 16 lanes are written as 16 scalars; the SLP vectoriser packs them into one or two
    vector registers (4x faster than scalar code here). Numba turns SLP off by default (numba#8852,
    miscompilations reported in 2023); it is on only while these kernels compile, and the test suite checks
    their every output against the NumPy reference. The setting is global in Numba, so it is restored as soon
    as the call returns. The loop vectoriser keeps its default (on) and handles the long flat loops.
    """
    saved = numba.config.SLP_VECTORIZE
    numba.config.SLP_VECTORIZE = 1
    try:
        yield
    finally:
        numba.config.SLP_VECTORIZE = saved


#: Whether the kernels keep their machine code on disk between processes (``cache=`` of every kernel).
CACHE = _can_cache()

if numba.config.DISABLE_JIT:

    def prefetch(array, index):
        """Plain Python (``NUMBA_DISABLE_JIT=1``): there is nothing to prefetch."""

    def pow2(n):
        """Plain Python (``NUMBA_DISABLE_JIT=1``): ``2^n``, and 0 below the normal range, as compiled."""
        return 0.0 if n < -1022 else 2.0**n

    def atomic_add(array, index, value):
        """Plain Python (``NUMBA_DISABLE_JIT=1``, one thread): ``array[index] += value``; returns the old value."""
        old = array[index]
        array[index] += value
        return old

    def atomic_load(array, index):
        """Plain Python (``NUMBA_DISABLE_JIT=1``): ``array[index]``."""
        return array[index]

    def spin_hint():
        """Plain Python (``NUMBA_DISABLE_JIT=1``): nothing to wait for on one thread."""

    def yield_cpu():
        """Plain Python (``NUMBA_DISABLE_JIT=1``): nothing to wait for on one thread."""

else:

    @intrinsic
    def prefetch(typingctx, array, index):
        """Ask the memory system for the cache line of ``array[index]`` (LLVM's ``llvm.prefetch``, a hint that
        never faults and never waits), so that it is in cache by the time the kernel reads it."""

        def codegen(context, builder, signature, args):
            array_type = signature.args[0]
            struct = context.make_array(array_type)(context, builder, args[0])
            address = cgutils.get_item_pointer(context, builder, array_type, struct, [args[1]], wraparound=False)
            byte_pointer = ir.IntType(8).as_pointer()
            i32 = ir.IntType(32)
            fn = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(ir.VoidType(), [byte_pointer, i32, i32, i32]), "llvm.prefetch.p0"
            )
            # read (0), keep in every cache level (3), data not instructions (1)
            builder.call(fn, [builder.bitcast(address, byte_pointer), i32(0), i32(3), i32(1)])
            return context.get_dummy_value()

        return numba.types.void(array, index), codegen

    @intrinsic
    def pow2(typingctx, n):
        """``2^n`` for an integral float64 ``n`` up to 1023, made from its bits: the biased exponent
        ``n + 1023`` shifted into place. 0 for ``n < -1022`` (no subnormals). Each operation has a vector
        instruction, so a loop over lanes stays vectorised."""
        if n != numba.types.float64:
            return None

        def codegen(context, builder, signature, args):
            i64 = ir.IntType(64)
            exponent = builder.fptosi(args[0], i64)
            bits = builder.shl(builder.add(exponent, i64(1023)), i64(52))
            value = builder.bitcast(bits, ir.DoubleType())
            return builder.select(builder.icmp_signed("<", exponent, i64(-1022)), ir.DoubleType()(0.0), value)

        return numba.types.float64(n), codegen

    def _item_pointer(context, builder, signature, args):
        """The address of ``array[index]`` for an intrinsic called as ``(array, index, ...)``."""
        array_type = signature.args[0]
        struct = context.make_array(array_type)(context, builder, args[0])
        return cgutils.get_item_pointer(context, builder, array_type, struct, [args[1]], wraparound=False)

    @intrinsic
    def atomic_add(typingctx, array, index, value):
        """``array[index] += value`` as one indivisible step (LLVM's ``atomicrmw add``, sequentially consistent):
        no other thread's update of that element is lost, and what this thread wrote before it is visible to a
        thread that reads the new value with :func:`atomic_load`. Returns the value before the addition. For
        integer arrays."""
        if not isinstance(array, numba.types.Array) or not isinstance(array.dtype, numba.types.Integer):
            return None

        def codegen(context, builder, signature, args):
            increment = context.cast(builder, args[2], signature.args[2], signature.args[0].dtype)
            return builder.atomic_rmw("add", _item_pointer(context, builder, signature, args), increment, "seq_cst")

        return array.dtype(array, index, value), codegen

    @intrinsic
    def atomic_load(typingctx, array, index):
        """``array[index]``, read with acquire ordering: everything that the thread whose :func:`atomic_add`
        wrote this value had written before it is visible after this read. For integer arrays."""
        if not isinstance(array, numba.types.Array) or not isinstance(array.dtype, numba.types.Integer):
            return None

        def codegen(context, builder, signature, args):
            width = signature.args[0].dtype.bitwidth // 8
            return builder.load_atomic(_item_pointer(context, builder, signature, args), "acquire", width)

        return array.dtype(array, index), codegen

    #: The CPU's "I am spinning" hint, as an LLVM intrinsic: ``pause`` on x86-64 (the spinning thread yields
    #: the core's resources to its SMT sibling and leaves the loop without a memory-order stall), ``yield``
    #: on ARM64; none elsewhere. Numba's code generator cannot emit inline assembly, only intrinsics.
    _SPIN_HINT = {"x86_64": ("llvm.x86.sse2.pause", ()), "amd64": ("llvm.x86.sse2.pause", ()),
                  "aarch64": ("llvm.aarch64.hint", (1,)), "arm64": ("llvm.aarch64.hint", (1,))}.get(
        platform.machine().lower())  # fmt: skip

    @intrinsic
    def spin_hint(typingctx):
        """Tell the CPU that this thread is waiting in a loop for another one (see :data:`_SPIN_HINT`)."""

        def codegen(context, builder, signature, args):
            if _SPIN_HINT is not None:
                name, hint = _SPIN_HINT
                i32 = ir.IntType(32)
                fn = cgutils.get_or_insert_function(
                    builder.module, ir.FunctionType(ir.VoidType(), [i32] * len(hint)), name
                )
                builder.call(fn, [i32(h) for h in hint])
            return context.get_dummy_value()

        return numba.types.void(), codegen

    #: The C library's "let another thread run on this core now", where there is one by that name (the POSIX
    #: systems); elsewhere :func:`yield_cpu` does nothing.
    _YIELD = "sched_yield" if platform.system() in ("Linux", "Darwin") else None

    @intrinsic
    def yield_cpu(typingctx):
        """Give this core to another runnable thread (:data:`_YIELD`), for a wait that has lasted: with more
        threads than cores, the thread being waited for may be one of them."""

        def codegen(context, builder, signature, args):
            if _YIELD is not None:
                fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.IntType(32), []), _YIELD)
                builder.call(fn, [])
            return context.get_dummy_value()

        return numba.types.void(), codegen


def compile_report(kernels, run) -> tuple[float, bool]:
    """Call ``run()``, which compiles ``kernels`` or loads them from Numba's on-disk cache.

    Returns ``(seconds, compiled)``: ``compiled`` is False when everything came from the cache. Call it before
    timing anything, so compilation never lands inside a measurement.

    A cache that cannot be written (a full disk) is a :class:`UserError` saying where; a damaged one (a file cut
    short, say by a full disk or a killed process) is emptied and the kernels compile again, as on a first run.
    """
    start = time.perf_counter()
    before = _cache_misses(kernels)
    try:
        run()
    except Exception as exc:
        if not _raised_by_numbas_cache(exc):
            raise
        folder = kernels[0]._cache.cache_path
        if isinstance(exc, OSError):
            raise UserError(f"could not save the compiled kernels into Numba's cache, {folder} "
                            f"({exc.strerror or exc}): free some space there, or set NUMBA_CACHE_DIR to a folder "
                            "with room") from None  # fmt: skip
        for kernel in kernels:
            kernel._cache.flush()  # an empty index: what it held is compiled anew (and saved)
        run()
    return time.perf_counter() - start, _cache_misses(kernels) > before


def _raised_by_numbas_cache(exc: Exception) -> bool:
    """Whether ``exc`` came out of Numba's on-disk cache (loading or saving a kernel)."""
    where = os.path.join("numba", "core", "caching.py")
    return any(frame.f_code.co_filename.endswith(where) for frame, _ in traceback.walk_tb(exc.__traceback__))


def _cache_misses(kernels) -> int:
    """Numba's count of cache misses (compilations) over ``kernels``; 0 under ``NUMBA_DISABLE_JIT=1``."""
    return sum(sum(k.stats.cache_misses.values()) for k in kernels if hasattr(k, "stats"))
