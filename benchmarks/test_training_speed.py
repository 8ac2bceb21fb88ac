"""How fast each implementation trains and predicts, grouped per batch size so the table compares them.

``pytest --benchmark-only`` times, for every implementation of :data:`benchmarks.impls.IMPLEMENTATIONS` (the
project's backends, PyTorch eager, compiled and with the textbook DataLoader, JAX; those on CUDA skipped
without a GPU): one training step and one full epoch over the 60,000 training images at batch 64, 256, 1024
and 8192, and inference over the 10,000 test images.
samples/s goes into each result's ``extra_info``; a summary table is printed at the end. Compilation and
warm-up happen in ``build``, outside every timed region, and every timed call ends synchronised.
"""

from __future__ import annotations

import numpy as np
import pytest

from lr_from_scratch.data import MNIST_MEAN, MNIST_STD, scale_images
from lr_from_scratch.metrics import evaluate

from .conftest import COMPILED_BATCH_SIZES, EXTRA, RESULTS
from .impls import IMPLEMENTATIONS, build, compute_roofline, unavailable

BATCH_SIZES = [64, 256, 1024, 8192]
SLOW = {"torch-cpu-dataloader", "numba-naive"}  # about 1 s an epoch: fewer rounds
COMPILED = {impl for impl, (_, _, loader) in IMPLEMENTATIONS.items() if loader == "compile"}
CASES = [(impl, size) for impl in IMPLEMENTATIONS for size in BATCH_SIZES
         if impl not in COMPILED or size in COMPILED_BATCH_SIZES]  # fmt: skip


@pytest.fixture(scope="module")
def benches(mnist):
    cache = {}

    def get(impl, batch_size):
        reason = unavailable(impl)
        if reason:
            pytest.skip(f"{impl}: {reason}")
        if (impl, batch_size) not in cache:
            cache[impl, batch_size] = build(impl, mnist, batch_size)
        return cache[impl, batch_size]

    return get


@pytest.mark.parametrize(("impl", "batch_size"), CASES)
def test_epoch(benchmark, benches, peak_gflops, impl, batch_size):
    bench = benches(impl, batch_size)
    benchmark.group = f"epoch, batch {batch_size}"
    benchmark.pedantic(bench.epoch, rounds=2 if impl in SLOW else 5, iterations=1)
    if benchmark.stats is None:  # --benchmark-disable: ran once, nothing measured
        return
    rate = bench.n_train / benchmark.stats.stats.min
    RESULTS[impl, batch_size] = rate
    benchmark.extra_info.update(samples_per_second=rate, roofline_fraction=rate / compute_roofline(peak_gflops))


@pytest.mark.parametrize(("impl", "batch_size"), CASES)
def test_step(benchmark, benches, impl, batch_size):
    bench = benches(impl, batch_size)
    benchmark.group = f"one step, batch {batch_size}"
    benchmark.pedantic(bench.step, rounds=20, iterations=1)
    if benchmark.stats is not None:
        benchmark.extra_info["samples_per_second"] = batch_size / benchmark.stats.stats.min


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_inference(benchmark, benches, mnist, impl):
    bench = benches(impl, 1024)
    benchmark.group = "inference, 10,000 test images"
    accuracy = benchmark.pedantic(bench.infer, rounds=5, iterations=1)
    weight, bias = bench.backend.params()  # what the timed inference computes, computed by the reference
    x = scale_images(mnist.test_images, MNIST_MEAN, MNIST_STD, weight.dtype)
    assert accuracy == pytest.approx(evaluate(weight, bias, x, mnist.test_labels.astype(np.int64))[1], abs=2e-4)
    if benchmark.stats is not None:
        benchmark.extra_info["samples_per_second"] = 10_000 / benchmark.stats.stats.min
        EXTRA[f"{impl}: inference samples/s"] = 10_000 / benchmark.stats.stats.min
