"""Steps shared among threads: numbered tasks, each run once by whichever thread claims it first, in phases.

The threaded training kernel has one ``prange`` loop per call, one iteration (a *worker*) per thread, rather
than two per step: each ``prange`` loop wakes the threads and waits for the last of them, a fork-join that
costs microseconds where a whole step at batch 64 takes a few tens. Inside that one loop the workers go
through the same numbered tasks: per step, one forward-backward task per block of the batch (a phase), then
one update task per share of the weight rows (the next phase). A worker tries to :func:`claim` every task of
a phase, its own block's first, runs those it gets, then waits (:func:`wait_for`) until every task of the
phase has finished (:func:`finish`) before it goes on to the next.

This cannot deadlock, however the threads are scheduled. A worker waits only for tasks of earlier phases, and
it has tried to claim each of those, so each one is claimed; whoever claimed a task runs it at once and waits,
in turn, only for earlier ones. So the earliest unfinished task is always running. If a threading layer runs
two workers one after the other on one thread (with more workers than threads, it must), the first runs every
task and the second finds them all claimed. A barrier, where each worker waits for all the others, would hang
there instead.

The counters are int64 arrays updated with atomic instructions (:mod:`.llvm`); a worker's writes before
:func:`finish` are visible to any worker that :func:`wait_for` lets through after it.
"""

from __future__ import annotations

from numba import njit

from .llvm import atomic_add, atomic_load, spin_hint, yield_cpu

#: Spins (each a CPU "pause", tens of nanoseconds) before a waiting worker starts giving its core away at every
#: turn: long enough for the other threads to finish a phase, short enough that with more threads than cores
#: (two processes training at once, or pytest-xdist) the thread being waited for soon gets the core.
SPINS_BEFORE_YIELDING = 2000


@njit(inline="always")
def claim(claims, task):
    """Whether this worker is the first to ask for ``task``: ``claims`` holds one counter per task, all 0 at
    the start, and only the worker that raises ``claims[task]`` from 0 gets it."""
    return atomic_add(claims, task, 1) == 0


@njit(inline="always")
def finish(done):
    """Count one more task finished in ``done[0]``, after everything this worker wrote for it."""
    atomic_add(done, 0, 1)


@njit(inline="always")
def wait_for(done, count):
    """Wait until ``count`` tasks have finished (the tasks are numbered from 0, so: until tasks ``0 .. count-1``
    have, since no later one can finish first): spin, then yield the core. Returns at once on the thread that
    ran them all."""
    spins = 0
    while atomic_load(done, 0) < count:
        if spins < SPINS_BEFORE_YIELDING:
            spin_hint()
            spins += 1
        else:
            yield_cpu()
