"""The implementations the benchmarks compare, behind one small interface, and the machine's own limits.

Each implementation trains through the same backend interface as the training commands, so what is timed is
what ``python -m lr_from_scratch.train`` and ``python -m torch_ref.train`` run. Every call that is timed ends
synchronised: the backends return Python floats, which waits for the GPU.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numba
import numpy as np

from lr_from_scratch.backends import make_backend
from lr_from_scratch.config import TrainConfig
from lr_from_scratch.data import batch_slices, epoch_order, prepare
from lr_from_scratch.trainer import TrainingInterrupted, TrainState, fit, train_epoch

#: name -> (backend, device, variant): the torch loader, or "compile" / "graphs" (the tensor loader's step compiled
#: / replayed as CUDA graphs); for the CUDA kernels, the one to run at every batch size ("dense", "grid"), where
#: plain "cuda" picks the sparse one up to batch 64 and the grid one beyond
IMPLEMENTATIONS = {
    "numpy": ("numpy", None, None),
    "numba-naive": ("numba-naive", None, None),
    "numba": ("numba", None, None),
    "numba-1-thread": ("numba", None, None),
    "cuda": ("cuda", "cuda", None),
    "cuda-dense": ("cuda", "cuda", "dense"),
    "cuda-grid": ("cuda", "cuda", "grid"),
    "torch-cpu": ("torch", "cpu", "tensor"),
    "torch-cpu-dataloader": ("torch", "cpu", "dataloader"),
    "torch-cpu-compile": ("torch", "cpu", "compile"),
    "torch-cuda": ("torch", "cuda", "tensor"),
    "torch-cuda-compile": ("torch", "cuda", "compile"),
    "torch-cuda-graphs": ("torch", "cuda", "graphs"),
    "jax-cpu": ("jax", "cpu", None),
    "jax-cuda": ("jax", "cuda", None),
}
#: Implementations held to a number of Numba threads (the others use them all): what threads bring.
NUMBA_THREADS = {"numba-1-thread": 1}
#: Implementations timed for speed only: each takes the same steps as another one (numba-naive as numpy, the
#: CUDA kernels held to one as cuda, the DataLoader and the compiled step as the tensors), so its time to 92%
#: would say nothing new.
SPEED_ONLY = {"numba-naive", "cuda-dense", "cuda-grid", "torch-cpu-dataloader", "torch-cpu-compile",
              "torch-cuda-compile", *NUMBA_THREADS}  # fmt: skip
#: The test accuracy whose time the report gives ("time to 92%").
TARGET_ACCURACY = 0.92
#: Dense floating-point work per training sample: forward X W^T and backward G^T X, 2 flops per multiply-add.
DENSE_FLOP_PER_SAMPLE = 2 * 2 * 784 * 10
#: Bytes a training sample costs from memory: its uint8 pixels, read once an epoch (the weights stay in cache).
BYTES_PER_SAMPLE = 784


def compute_roofline(gflops: float) -> float:
    """Training samples/s a machine of ``gflops`` peak could reach on the dense epoch: peak / FLOP per sample."""
    return gflops * 1e9 / DENSE_FLOP_PER_SAMPLE


def memory_roofline(gbs: float) -> float:
    """Training samples/s a machine of ``gbs`` GB/s could stream: bandwidth / bytes per sample."""
    return gbs * 1e9 / BYTES_PER_SAMPLE


#: Variables some machines set to hold OpenBLAS to an older kernel (AVX2 on an AVX-512 CPU, about half the
#: float32 peak). The roofline's peak is measured without them, in a process of its own; tests keep them.
BLAS_LIMITS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


def unavailable(name: str) -> str | None:
    """Why ``name`` cannot run here, or None."""
    backend, device, _ = IMPLEMENTATIONS[name]
    if backend == "jax":
        if importlib.util.find_spec("jax") is None:
            return "no JAX: pip install 'lr-from-scratch[peers]'"
        import jax

        if device == "cuda" and not any(d.platform == "gpu" for d in jax.devices()):
            return "no CUDA device"
    elif backend == "cuda":
        from numba import config, cuda

        if config.ENABLE_CUDASIM or not cuda.is_available():  # the simulator is no GPU to time
            return "no CUDA device"
    elif device == "cuda":
        import torch

        if not torch.cuda.is_available():
            return "no CUDA device"
    return None


@dataclass
class Bench:
    """One implementation at one batch size, trained on all 60,000 training images, ready to be timed."""

    backend: object
    config: TrainConfig  # a constant learning rate, no validation split
    numba_threads: int | None = None  # None: as many as Numba has

    def __post_init__(self):
        self.n_train = self.backend.n_train
        self.batches = batch_slices(self.n_train, self.config.batch_size)
        self._epoch = 0
        self._order = epoch_order(self.n_train, self.config.seed, 0)
        self._next_batch = 0

    def epoch(self) -> float:
        """One epoch in a fresh order, run by the training loop's own epoch; returns the mean loss."""
        state = TrainState(epoch=self._epoch)
        self._epoch += 1
        with self._threads():
            train_epoch(self.backend, self.config, state, self.batches)
        return state.loss_sum / self.n_train

    def step(self) -> float:
        """One SGD step on the next batch."""
        full = max(len(self.batches) - 1, 1)  # never the short last one, unless it is the epoch's only batch
        batch = self.batches[self._next_batch % full]
        self._next_batch += 1
        with self._threads():
            return self.backend.run_steps(self._order, [batch], self.config.lr)[0]

    def infer(self) -> float:
        """Loss and accuracy over the 10,000 test images; returns the accuracy."""
        with self._threads():
            return self.backend.evaluate("test")[1]

    @contextlib.contextmanager
    def _threads(self):
        """Hold Numba to ``numba_threads`` threads while the body runs (no change for None)."""
        saved = numba.get_num_threads()
        numba.set_num_threads(min(self.numba_threads or saved, saved))
        try:
            yield
        finally:
            numba.set_num_threads(saved)


def _backend(name: str, config: TrainConfig, splits):
    """The backend of implementation ``name``, kernels compiled (outside any timing); TF32 off on CUDA."""
    backend_name, device, variant = IMPLEMENTATIONS[name]
    if backend_name == "jax":
        import jax

        from .jax_peer import JaxBackend

        return JaxBackend(config, splits, jax.devices("gpu" if device == "cuda" else "cpu")[0])
    if backend_name == "torch":
        import torch

        from torch_ref.backend import TorchBackend

        torch.backends.cuda.matmul.allow_tf32 = False
        step = dict(compile=variant == "compile", cuda_graphs=variant == "graphs")  # both on tensors in memory
        loader = "tensor" if any(step.values()) else variant
        return TorchBackend(config, splits, torch.device(device), loader, **step)
    backend = make_backend(config, splits)
    if backend_name == "cuda" and variant:
        backend.layer.kernel = variant
    return backend


def build(name: str, mnist, batch_size: int) -> Bench:
    """The implementation ``name`` at ``batch_size``, compiled and warmed up: the next call is a steady one."""
    config = TrainConfig(batch_size=batch_size, val_split=0.0, lr_step=0, backend=IMPLEMENTATIONS[name][0])
    splits = prepare(mnist, config)
    bench = Bench(_backend(name, config, splits), config, NUMBA_THREADS.get(name))
    bench.step()  # warm-up: allocator, caches, CUDA context and kernels
    bench.infer()
    if IMPLEMENTATIONS[name][2] == "graphs":  # CUDA graphs record each shape of call on its second sight
        bench.epoch()
        bench.epoch()
    return bench


def peak_matmul_gflops(n: int = 4096, repeats: int = 3) -> float:
    """This machine's float32 matrix-product rate through NumPy's BLAS (n^3 with n = 4096), best of three."""
    a = np.random.default_rng(0).random((n, n), dtype=np.float32)
    a @ a
    best = min(_seconds(lambda: a @ a) for _ in range(repeats))
    return 2 * n**3 / best / 1e9


def blas_kernel() -> str:
    """The BLAS NumPy calls, and the kernel it chose for this CPU (``openblas SkylakeX 0.3.31``, say)."""
    from threadpoolctl import threadpool_info

    found = [i for i in threadpool_info() if i["user_api"] == "blas"]
    return ", ".join(f"{i['internal_api']} {i.get('architecture')} {i['version']}" for i in found) or "unknown"


def machine_peak(n: int = 4096) -> dict:
    """This machine's real float32 matrix-product peak: :func:`peak_matmul_gflops` in a fresh process without
    :data:`BLAS_LIMITS`. Returns ``{"gflops", "blas"}``, the kernel that process used."""
    code = (
        "import json; from benchmarks.impls import peak_matmul_gflops, blas_kernel; "
        f"print(json.dumps({{'gflops': peak_matmul_gflops({n}), 'blas': blas_kernel()}}))"
    )
    env = {k: v for k, v in os.environ.items() if k not in BLAS_LIMITS}
    repo = Path(__file__).resolve().parent.parent
    done = subprocess.run([sys.executable, "-c", code], env=env, cwd=repo, capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def gpu_limits(n: int = 8192, megabytes: int = 1024, repeats: int = 5) -> dict | None:
    """The GPU's own limits, through torch: its float32 matrix-product rate (TF32 off: exact float32, as the
    implementations run) and its memory bandwidth (a large device-to-device copy, read + write), best of
    ``repeats``, each timed with CUDA events. None without a CUDA device."""
    import torch

    if not torch.cuda.is_available():
        return None
    torch.backends.cuda.matmul.allow_tf32 = False
    a = torch.randn(n, n, device="cuda")
    src = torch.empty(megabytes * 2**20 // 4, device="cuda")
    dst = torch.empty_like(src)

    def best_seconds(fn) -> float:
        fn()  # warm-up
        times = []
        for _ in range(repeats):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) / 1000)
        return min(times)

    return {
        "name": torch.cuda.get_device_name(0),
        "peak_gflops": 2 * n**3 / best_seconds(lambda: a @ a) / 1e9,
        "memory_gbs": 2 * src.nbytes / best_seconds(lambda: dst.copy_(src)) / 1e9,
    }


def memory_bandwidth_gbs(megabytes: int = 512, repeats: int = 3) -> float:
    """Copy bandwidth (bytes read + bytes written per second) of a large float32 array, best of three."""
    src = np.ones(megabytes * 2**20 // 4, dtype=np.float32)
    dst = np.empty_like(src)
    np.copyto(dst, src)
    best = min(_seconds(lambda: np.copyto(dst, src)) for _ in range(repeats))
    return 2 * src.nbytes / best / 1e9


def _seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def time_to_accuracy(mnist, name: str, target: float = TARGET_ACCURACY, should_stop=lambda: False) -> dict | None:
    """Train ``name`` with the default settings until the test accuracy first reaches ``target``.

    Returns ``{"seconds": training seconds (evaluation excluded), "epoch": that epoch}``, or seconds None when
    the default epochs never get there; training stops at that epoch. None if ``should_stop()`` turned true first.
    """
    config = TrainConfig(backend=IMPLEMENTATIONS[name][0])
    splits = prepare(mnist, config)
    backend = _backend(name, config, splits)
    reached = {"seconds": None, "epoch": None}

    def check(state):
        if reached["seconds"] is None and backend.evaluate("test")[1] >= target:
            reached.update(seconds=state.train_seconds, epoch=state.epoch)

    try:
        fit(backend, config, progress=False, log=None, on_epoch_end=check,
            should_stop=lambda: reached["seconds"] is not None or should_stop())  # fmt: skip
    except TrainingInterrupted:  # reached, or asked to stop first
        return reached if reached["seconds"] is not None else None
    return reached


def sklearn_time_to_accuracy(mnist, target: float = TARGET_ACCURACY, should_stop=lambda: False) -> dict | None:
    """scikit-learn's ``LogisticRegression`` (lbfgs, its defaults) on the same training images and scaling.

    lbfgs has no epochs, so ``max_iter`` doubles from 10 until a fit reaches ``target``; the seconds are those
    of that fit. Returns ``{"seconds", "max_iter", "accuracy"}``, or None if ``should_stop()`` turned true
    between two fits.
    """
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    splits = prepare(mnist, TrainConfig())
    (x, y), (x_test, y_test) = splits.scaled(splits.train, "float32"), splits.scaled(splits.test, "float32")
    max_iter = 10
    while not should_stop():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            start = time.perf_counter()
            clf = LogisticRegression(max_iter=max_iter).fit(x, y)
            seconds = time.perf_counter() - start
        accuracy = clf.score(x_test, y_test)
        if accuracy >= target or max_iter >= 640:
            return {"seconds": seconds if accuracy >= target else None, "max_iter": max_iter, "accuracy": accuracy}
        max_iter *= 2
    return None
