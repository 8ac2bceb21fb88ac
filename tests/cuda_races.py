"""A race and uninitialised-read check for kernels run in Numba's CUDA simulator.

The simulator runs a block's threads in turns, so two threads that touch one address in the same phase never
collide there, and scratch memory holds what NumPy put in it. On a GPU the first is a race and the second a read
of whatever was left in memory; NVIDIA's compute-sanitizer finds both on a GPU (``tests/test_cuda_sanitizer.py``).
:func:`watch` finds them without one: while a kernel runs it logs every access to an element of a shared or a
global array, with the block and thread, how many grid barriers (``this_grid().sync()``), block barriers
(``syncthreads``) and warp barriers (``syncwarp``) the thread had passed, and whether the access was a write or
an atomic. :meth:`Accesses.races` then lists the addresses two threads touched between the same two barriers,
at least one writing (atomics among themselves excepted): two blocks between the same grid barriers, two threads
of a block between the same block barriers, unless they are lanes of one warp on either side of a ``syncwarp``.
A shuffle orders nothing in memory, so it counts for nothing here. :meth:`Accesses.read_before_written` lists
the scratch arrays read before any write.
"""

from __future__ import annotations

import linecache
import sys
import threading
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

WARP = 32


@dataclass
class Accesses:
    """The log of a run under :func:`watch`: per address, ``(block, thread, grid barriers, block barriers, warp
    barriers, write, atomic)`` in the order they happened, and the names of the arrays the addresses belong to."""

    log: dict = field(default_factory=lambda: defaultdict(list))
    names: dict = field(default_factory=dict)  # (first byte, end) -> name

    def record(self, array: np.ndarray, index, write: bool) -> None:
        thread = threading.current_thread()
        address = _address(array, index)
        if address is not None and hasattr(thread, "thread_id"):
            passed = (thread.__dict__.get(counter, 0) for counter in ("grid_barriers", "barriers", "warp_barriers"))
            state = (tuple(thread.blockIdx), thread.thread_id, *passed, write, thread.__dict__.get("atomic", False))
            self.log[address].append(state)

    def name(self, array: np.ndarray, name: str) -> None:
        start = array.__array_interface__["data"][0]
        self.names[(start, start + array.nbytes)] = name

    def name_of(self, address: int) -> str:
        return next((name for (lo, hi), name in self.names.items() if lo <= address < hi), hex(address))

    def races(self) -> set[str]:
        """The arrays with an address two threads touched between the same two barriers, one of them writing."""
        found = set()
        for address, accesses in self.log.items():
            by_grid_phase = defaultdict(list)
            for access in accesses:
                by_grid_phase[access[2]].append(access)
            for phase in by_grid_phase.values():
                for access in phase:
                    if access[5] and any(_unordered(access, other) for other in phase):
                        found.add(self.name_of(address))
        return found

    def read_before_written(self, inputs: set[str]) -> set[str]:
        """The arrays, other than the kernel's ``inputs``, with an address read before anything was written
        there."""
        names = {self.name_of(address) for address, accesses in self.log.items() if not accesses[0][5]}
        return names - inputs


def _unordered(write: tuple, other: tuple) -> bool:
    """Whether ``write`` and the access ``other``, logged between the same two grid barriers, race: another
    thread, not both atomic, and either in another block or between the same two block barriers, and then not a
    lane of the same warp on the other side of a ``syncwarp``."""
    block, thread, _, barriers, warp_barriers, _, atomic = write
    if (other[0], other[1]) == (block, thread) or (atomic and other[6]):
        return False
    if other[0] != block:
        return True
    return other[3] == barriers and not (other[1] // WARP == thread // WARP and other[4] != warp_barriers)


def _address(array: np.ndarray, index) -> int | None:
    """The address of ``array[index]`` for an index naming one element; None for a slice."""
    index = index if isinstance(index, tuple) else (index,)
    if len(index) != array.ndim or not all(isinstance(i, (int, np.integer)) for i in index):
        return None
    offset = sum(int(i) % n * stride for i, n, stride in zip(index, array.shape, array.strides, strict=True))
    return array.__array_interface__["data"][0] + offset


def shared_arrays(make):
    """A stand-in for the simulator's ``cuda.shared.array`` whose arrays are ``make(shape, dtype, line)`` (a NumPy
    dtype; ``line`` the kernel's ``(file, line number)``): one per line of code that asks for one, as in the
    simulator's own, made once under a lock, since the block's threads all ask."""
    from numba.core import types
    from numba.np import numpy_support

    lock = threading.Lock()

    def array(self, shape, dtype, alignment=None):
        line = (sys._getframe(1).f_code.co_filename, sys._getframe(1).f_lineno)
        with lock:
            if line not in self._allocations:
                dtype = numpy_support.as_dtype(dtype) if isinstance(dtype, types.Type) else np.dtype(dtype)
                self._allocations[line] = make(shape, dtype, line)
            return self._allocations[line]

    return array


def watch(monkeypatch, fill) -> Accesses:
    """Log every element access of the kernels launched from now on (until ``monkeypatch`` undoes it), their
    shared arrays made as ``fill(shape, dtype)`` (a NumPy dtype); returns the log."""
    from numba.cuda.simulator import kernel, kernelapi
    from numba.cuda.simulator.cudadrv import devicearray

    accesses = Accesses()

    class Watched(np.ndarray):
        def __getitem__(self, index):
            accesses.record(self, index, False)
            return super().__getitem__(index)

        def __setitem__(self, index, value):
            accesses.record(self, index, True)
            super().__setitem__(index, value)

    def watched_array(shape, dtype, line):
        array = fill(shape, dtype).view(Watched)
        variable = linecache.getline(*line).split("=")[0].strip()  # masks = cuda.shared.array(...)
        accesses.name(array, f"shared {variable} (line {line[1]})")
        return array

    within = devicearray.FakeWithinKernelCUDAArray
    get, set_ = within.__getitem__, within.__setitem__

    def global_get(self, index):
        accesses.record(self._item._ary, index, False)
        return get(self, index)

    def global_set(self, index, value):
        accesses.record(self._item._ary, index, True)
        set_(self, index, value)

    def counted(method, counter):
        def call(*args, **kwargs):
            result = method(*args, **kwargs)
            thread = threading.current_thread()
            thread.__dict__[counter] = thread.__dict__.get(counter, 0) + 1
            return result

        return call

    def atomic(method):
        def call(*args, **kwargs):
            thread = threading.current_thread()
            thread.atomic = True
            try:
                return method(*args, **kwargs)
            finally:
                thread.atomic = False

        return call

    thread_class = kernel.BlockManager.thread_class
    monkeypatch.setattr(kernelapi.GridGroup, "sync", counted(kernelapi.GridGroup.sync, "grid_barriers"))
    monkeypatch.setattr(kernelapi.FakeCUDAShared, "array", shared_arrays(watched_array))
    monkeypatch.setattr(within, "__getitem__", global_get)
    monkeypatch.setattr(within, "__setitem__", global_set)
    monkeypatch.setattr(thread_class, "syncthreads", counted(thread_class.syncthreads, "barriers"))
    monkeypatch.setattr(kernelapi.FakeCUDAModule, "syncwarp", counted(kernelapi.FakeCUDAModule.syncwarp,
                                                                      "warp_barriers"))  # fmt: skip
    for name in ("add", "or_", "max", "min"):
        monkeypatch.setattr(kernelapi.FakeCUDAAtomic, name, atomic(getattr(kernelapi.FakeCUDAAtomic, name)))
    return accesses
