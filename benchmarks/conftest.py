"""Shared set-up for the speed benchmarks, and the summary table printed at the end of the session."""

from __future__ import annotations

import time

import numpy as np
import pytest

from lr_from_scratch.data import load_mnist

#: Dense floating-point work of one epoch: forward X W^T and backward G^T X, 2 flops per multiply-add.
DENSE_FLOP_PER_SAMPLE = 2 * 2 * 784 * 10

RESULTS: dict[tuple[str, int], float] = {}  # (implementation, batch size) -> samples/s
EXTRA: dict[str, float] = {}


@pytest.fixture(scope="session")
def mnist():
    return load_mnist(progress=False)


@pytest.fixture(scope="session")
def peak_gflops(request) -> float:
    """This machine's float32 matrix-product rate (NumPy's BLAS, n^3 with n = 4096), best of three."""
    n = 512 if request.config.getoption("benchmark_disable") else 4096
    a = np.random.default_rng(0).random((n, n), dtype=np.float32)
    best = np.inf
    for _ in range(3):
        start = time.perf_counter()
        a @ a
        best = min(best, time.perf_counter() - start)
    EXTRA["peak float32 GFLOP/s"] = 2 * n**3 / best / 1e9
    return EXTRA["peak float32 GFLOP/s"]


def pytest_terminal_summary(terminalreporter):
    if not RESULTS:
        return
    write = terminalreporter.write_line
    peak = EXTRA.get("peak float32 GFLOP/s")
    write("")
    write("Training throughput, one epoch over 60,000 images (samples/s)")
    impls = sorted({impl for impl, _ in RESULTS})
    batches = sorted({b for _, b in RESULTS})
    write(f"{'batch':>6} " + " ".join(f"{impl:>14}" for impl in impls) + "   numba/numpy  numba/torch  roofline")
    for b in batches:
        row = [RESULTS.get((impl, b)) for impl in impls]
        cells = " ".join(f"{v:>14,.0f}" if v else f"{'-':>14}" for v in row)
        numba, numpy_, torch_ = (RESULTS.get((k, b)) for k in ("numba", "numpy", "torch-eager"))
        ratio_np = f"{numba / numpy_:>11.1f}x" if numba and numpy_ else f"{'-':>12}"
        ratio_t = f"{numba / torch_:>11.1f}x" if numba and torch_ else f"{'-':>12}"
        roof = f"{numba * DENSE_FLOP_PER_SAMPLE / 1e9 / peak:>9.0%}" if numba and peak else ""
        write(f"{b:>6} {cells}  {ratio_np} {ratio_t} {roof}")
    for key, value in EXTRA.items():
        write(f"{key}: {value:,.2f}")
