"""What Numba's CUDA simulator lacks for these kernels: warp shuffles, and barriers that do not spin.

The sparse kernel's lanes add up their partial sums through warp shuffles (:func:`.cuda_device._warp_sum`). On a
GPU they are instructions; the simulator (``NUMBA_ENABLE_CUDASIM=1``), which runs every thread of a block as a
Python thread, has none. :func:`install` gives it ``cuda.shfl_xor_sync`` and ``cuda.syncwarp`` with the GPU's
meaning: the threads of a warp (32 consecutive threads of a block) meet at a barrier, and a shuffle hands each
lane the value of lane ``lane ^ lane_mask``.

A meeting of Python threads is only quick when no thread holds the interpreter meanwhile, and the simulator's
own block manager does: it polls its threads without pause to see whether all wait at ``syncthreads``, so every
wake-up waits for it to let go (a simulated shuffle took 20 ms). :class:`BlockManager` runs a block's threads
against real barriers instead and just waits for them to end. A barrier some thread never reaches fails after
:data:`BARRIER_SECONDS` instead of hanging, and a thread that fails breaks its block's barriers, so the others
stop at once. What a GPU leaves undefined fails too: the lanes of a warp at different warp functions, and a
shuffle over a warp that is not whole.

It builds on the simulator's insides as numba-cuda 0.30 has them (``BlockThread``'s ``thread_id`` and
``_manager``, the block manager's constructor), so ``constraints.txt`` pins that version, and the simulated tests
(``tests/test_cuda.py``) run on it.
"""

from __future__ import annotations

import threading

import numpy as np

#: Lanes of a warp, as on every NVIDIA GPU.
WARP = 32
#: Seconds a simulated barrier (a block's or a warp's) waits for its threads before it fails.
BARRIER_SECONDS = 60


class _Warp:
    """One warp's meeting point: a barrier for its threads and two rows of a slot per lane for what they bring to
    a meeting (which warp function, and the value to exchange), used in turn: a lane that has read its partner's
    slot in one row and gone on to the next meeting writes to the other row, which nobody is reading, and so one
    barrier a meeting suffices."""

    def __init__(self, size: int):
        self.barrier = threading.Barrier(size)
        self.slots = [[None] * size, [None] * size]
        self.turns = [0] * size

    def meet(self, lane: int, call: str, mask: int, value=None) -> list:
        """Wait until every lane of the warp has come with its ``(call, mask, value)``; return the row of them.
        Lanes at different warp functions, or a mask naming lanes that do not exist, fail the launch: on a GPU
        both are undefined."""
        size = len(self.turns)
        if mask & ~((1 << size) - 1) & 0xFFFFFFFF:
            raise RuntimeError(f"{call} with mask {mask:#x} in a warp of {size} threads: a block of whole warps needed")
        turn = self.turns[lane]
        self.turns[lane] = 1 - turn
        row = self.slots[turn]
        row[lane] = (call, mask, value)
        self.barrier.wait(BARRIER_SECONDS)
        neighbour = row[(lane + 1) % size]  # lanes that differ anywhere differ somewhere next to each other
        if neighbour[:2] != (call, mask):
            raise RuntimeError(f"the lanes of a warp met at different warp functions: {call} and {neighbour[0]}")
        return row


def _warp(thread) -> tuple[_Warp, int]:
    """The warp of ``thread`` (a simulated CUDA thread), and its lane: made at its first lane's first call."""
    manager = thread._manager
    first = thread.thread_id - thread.thread_id % WARP
    key = (tuple(thread.blockIdx), first)
    with manager.lock:
        if key not in manager.warps:
            manager.warps[key] = _Warp(min(WARP, int(np.prod(manager._block_dim)) - first))
            if manager.aborted:
                manager.warps[key].barrier.abort()
        return manager.warps[key], thread.thread_id - first


def shfl_xor_sync(module, mask, value, lane_mask):
    """Lane ``l`` gets the ``value`` of lane ``l ^ lane_mask``."""
    warp, lane = _warp(threading.current_thread())
    row = warp.meet(lane, "shfl_xor_sync", mask, value)
    return row[lane ^ lane_mask][2]


def syncwarp(module, mask=0xFFFFFFFF):
    """Every lane of the warp waits for the others."""
    warp, lane = _warp(threading.current_thread())
    warp.meet(lane, "syncwarp", mask)


def block_manager(block_thread):
    """The simulator's block manager, given its thread class ``block_thread``: :class:`BlockManager`'s class."""

    class BarrierThread(block_thread):
        """A simulated CUDA thread whose ``syncthreads`` is a real barrier (``self.block``), and which breaks
        its block's barriers when it fails."""

        def syncthreads(self):
            self.block.wait(BARRIER_SECONDS)

        def run(self):
            super().run()  # keeps an exception in self.exception
            if self.exception:
                self._manager.abort()

    class BlockManager:
        """Runs the blocks of a launch one after the other, each block's threads together, with a barrier for
        ``syncthreads`` and one for each warp; raises the first real error of a thread (not the broken barriers
        it left behind)."""

        thread_class = BarrierThread

        def __init__(self, f, grid_dim, block_dim, debug):
            self._f, self._grid_dim, self._block_dim, self._debug = f, grid_dim, block_dim, debug
            self.block_state = np.zeros(block_dim, dtype=np.bool_)  # syncthreads_count and its kin use it
            self.lock, self.warps, self.barriers, self.aborted = threading.Lock(), {}, [], False

        def abort(self):
            with self.lock:
                self.aborted = True
                for barrier in [*self.barriers, *(warp.barrier for warp in self.warps.values())]:
                    barrier.abort()

        def threads(self, block, args) -> list:
            """The threads of ``block``, with its barrier."""
            barrier = threading.Barrier(int(np.prod(self._block_dim)))
            self.barriers.append(barrier)
            threads = []
            for point in np.ndindex(*self._block_dim):
                thread = self.thread_class(lambda: self._f(*args), self, block, point, self._debug)
                thread.block = barrier
                threads.append(thread)
            return threads

        def run(self, grid_point, *args):
            self.join(self.threads(grid_point, args))

        def join(self, threads):
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            failed = [t.exception for t in threads if t.exception]
            if failed:
                kind, traceback = min(failed, key=lambda e: isinstance(e[0], threading.BrokenBarrierError))
                raise kind.with_traceback(traceback)

    return BlockManager


def install() -> None:
    """Give the simulator the warp functions and :func:`block_manager`'s manager (once)."""
    from numba.cuda.simulator import kernel, kernelapi

    if getattr(kernel.BlockManager, "thread_class", None) is None:
        kernel.BlockManager = block_manager(kernel.BlockThread)
    for name, function in (("shfl_xor_sync", shfl_xor_sync), ("syncwarp", syncwarp)):
        setattr(kernelapi.FakeCUDAModule, name, function)
