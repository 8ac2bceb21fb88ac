"""How fast each implementation trains: one epoch over MNIST's 60,000 training images per batch size.

Run ``pytest --benchmark-only``; a table with samples/s, the Numba backend's speed-up over NumPy and
PyTorch CPU eager, and its fraction of the dense roofline is printed at the end. Compilation and warm-up
happen outside every timed region.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lr_from_scratch.backends import NumbaBackend, NumpyBackend
from lr_from_scratch.config import TrainConfig
from lr_from_scratch.data import MNIST_MEAN, MNIST_STD, batch_slices, epoch_order, prepare, rng, scale_images
from lr_from_scratch.kernels import SparseRows, warm_up
from lr_from_scratch.model import SoftmaxRegression, init_params

from .conftest import DENSE_FLOP_PER_SAMPLE, EXTRA, RESULTS

BATCH_SIZES = [64, 256, 1024]
N = 60_000


@pytest.fixture(scope="module")
def data(mnist):
    images = mnist.train_images.reshape(N, -1)
    return images, mnist.train_labels.astype(np.int64)


def numpy_epoch(data, batch_size):
    images, labels = data
    config = TrainConfig(batch_size=batch_size)
    x = scale_images(images, MNIST_MEAN, MNIST_STD)
    backend = NumpyBackend(SoftmaxRegression(*init_params(784, 10, "torch", rng(0, "init"))), config, (x, labels))
    return _epoch_runner(backend, batch_size)


def numba_epoch(data, batch_size):
    images, labels = data
    config = TrainConfig(batch_size=batch_size)
    seconds, compiled = warm_up("float32")
    if compiled:
        EXTRA["numba compile seconds (first run on this machine)"] = seconds
    a, c = 1 / (255 * MNIST_STD), -MNIST_MEAN / MNIST_STD
    weight, bias = init_params(784, 10, "torch", rng(0, "init"))
    backend = NumbaBackend(weight, bias, config, a, c, (SparseRows.from_dense(images), labels))
    return _epoch_runner(backend, batch_size)


def _epoch_runner(backend, batch_size):
    batches = batch_slices(N, batch_size)
    epoch = iter(range(10**6))

    def run():
        order = epoch_order(N, 0, next(epoch))
        for start in range(0, len(batches), backend.steps_per_call):
            backend.run_steps(order, batches[start : start + backend.steps_per_call], 0.01)

    return run


def torch_eager_epoch(mnist, batch_size):
    """torch_ref as a PyTorch user writes it: nn.Linear, CrossEntropyLoss, optim.SGD, tensors in memory, CPU."""
    from torch_ref.backend import TorchBackend

    config = TrainConfig(batch_size=batch_size, backend="torch", val_split=0.0)
    return _epoch_runner(TorchBackend(config, prepare(mnist, config), torch.device("cpu")), batch_size)


IMPLEMENTATIONS = {"numpy": numpy_epoch, "numba": numba_epoch, "torch-eager": torch_eager_epoch}


@pytest.mark.parametrize("batch_size", BATCH_SIZES)
@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_epoch(benchmark, mnist, data, peak_gflops, impl, batch_size):
    run = IMPLEMENTATIONS[impl](mnist if impl == "torch-eager" else data, batch_size)
    run()  # warm-up: caches, allocator, JIT (already compiled by warm_up, outside the timing)
    benchmark.group = f"one epoch, batch {batch_size}"
    rounds = 3 if impl == "torch-eager" and batch_size == 64 else 5
    benchmark.pedantic(run, rounds=rounds, iterations=1)
    if benchmark.stats is None:  # --benchmark-disable: ran once, nothing measured
        return
    seconds = benchmark.stats.stats.min
    RESULTS[impl, batch_size] = N / seconds
    benchmark.extra_info["samples_per_second"] = N / seconds
    benchmark.extra_info["roofline_fraction"] = N * DENSE_FLOP_PER_SAMPLE / seconds / 1e9 / peak_gflops
