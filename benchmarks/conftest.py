"""Shared set-up for the speed benchmarks, and the summary table printed at the end of the session."""

from __future__ import annotations

import pytest

from lr_from_scratch.data import load_mnist

from .impls import IMPLEMENTATIONS, compute_roofline, peak_matmul_gflops

RESULTS: dict[tuple[str, int], float] = {}  # (implementation, batch size) -> epoch samples/s
#: torch.compile compiles for every batch shape (seconds each on the CPU): the compiled step is timed at these only.
COMPILED_BATCH_SIZES = (64, 1024)
EXTRA: dict[str, float] = {}


@pytest.fixture(scope="session")
def mnist():
    return load_mnist(progress=False)


@pytest.fixture(scope="session")
def peak_gflops(request) -> float:
    """This machine's float32 matrix-product rate (smaller, just exercised, under --benchmark-disable)."""
    n = 512 if request.config.getoption("benchmark_disable") else 4096
    EXTRA["peak float32 GFLOP/s"] = peak_matmul_gflops(n)
    return EXTRA["peak float32 GFLOP/s"]


def pytest_terminal_summary(terminalreporter):
    if not RESULTS:
        return
    write = terminalreporter.write_line
    peak = EXTRA.get("peak float32 GFLOP/s")
    impls = [i for i in IMPLEMENTATIONS if any(impl == i for impl, _ in RESULTS)]  # whatever batch sizes ran
    write("")
    write("Training throughput, one epoch over 60,000 images (samples/s)")
    write(f"{'batch':>6} " + " ".join(f"{impl:>21}" for impl in impls) + "  numba/numpy numba/torch-cpu roofline")
    for b in sorted({b for _, b in RESULTS}):
        cells = " ".join(f"{RESULTS[i, b]:>21,.0f}" if (i, b) in RESULTS else f"{'-':>21}" for i in impls)
        write(f"{b:>6} {cells}  {_summary_ratios(b, peak)}")
    if any((i, b) not in RESULTS for i in impls for b in {b for _, b in RESULTS}):
        sizes = " and ".join(map(str, COMPILED_BATCH_SIZES))
        write(f"-: not timed at that batch size (the compiled PyTorch step only at {sizes}), or not selected")
    for key, value in EXTRA.items():
        write(f"{key}: {value:,.2f}")


def _summary_ratios(batch_size: int, peak: float | None) -> str:
    """The summary's last three columns at ``batch_size``: numba over numpy and over torch-cpu, and numba's dense
    roofline fraction; each blank (its width kept) where what it needs was not timed."""
    numba, numpy_, torch_ = (RESULTS.get((k, batch_size)) for k in ("numba", "numpy", "torch-cpu"))
    over_numpy = f"{numba / numpy_:.1f}x" if numba and numpy_ else ""
    over_torch = f"{numba / torch_:.1f}x" if numba and torch_ else ""
    roof = f"{numba / compute_roofline(peak):.0%}" if numba and peak else ""
    return f"{over_numpy:>11} {over_torch:>15} {roof:>8}"
