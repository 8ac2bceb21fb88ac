"""The peers the benchmarks measure the kernels against take the same steps as the reference: JAX's compiled
epoch (``benchmarks/jax_peer.py``), in float64, ends where the NumPy backend ends."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from benchmarks.impls import IMPLEMENTATIONS, build, unavailable
from lr_from_scratch.backends import make_backend
from lr_from_scratch.config import TrainConfig
from lr_from_scratch.data import prepare
from lr_from_scratch.optim import momentum_buffer_key
from lr_from_scratch.trainer import fit


@pytest.mark.parametrize("options", [dict(), dict(nesterov=True, weight_decay=1e-4, batch_size=200)], ids=str)
def test_jax_takes_the_steps_of_the_numpy_backend(mnist, options):
    from benchmarks.jax_peer import JaxBackend

    config = TrainConfig(limit=6000, epochs=2, dtype="float64", patience=0, **options)
    splits = prepare(mnist, config)
    jax_backend = JaxBackend(config, splits)
    fit(jax_backend, config, progress=False, log=None)
    numpy_config = TrainConfig(**{**config.to_dict(), "backend": "numpy"})
    numpy_backend = make_backend(numpy_config, splits)
    fit(numpy_backend, numpy_config, progress=False, log=None)
    for name in ("weight", "bias", momentum_buffer_key(0)):
        diff = np.abs(jax_backend.state()[name] - numpy_backend.state()[name]).max()
        assert diff <= 1e-10, f"{name}: max |jax - numpy| = {diff:.2e}"
    assert jax_backend.evaluate("test") == pytest.approx(numpy_backend.evaluate("test"), rel=1e-12)


def test_the_jax_peer_is_a_benchmark_implementation(mnist):
    assert unavailable("jax-cpu") is None and IMPLEMENTATIONS["jax-cpu"][0] == "jax"
    bench = build("jax-cpu", mnist, 1024)
    assert bench.backend.info["compile_seconds"] > 0
    loss = bench.epoch()
    assert 0 < loss < 1 and bench.infer() > 0.85


def test_a_timed_jax_epoch_compiles_nothing(mnist, caplog):
    """``build`` compiles the epoch's scans; the sums of their per-step outputs (``.sum()`` in JAX) once compiled
    a reduction for each new length inside the first timed epoch, and inside the time to 92%."""
    import jax

    bench = build("jax-cpu", mnist, 1024)
    with jax.log_compiles(True), caplog.at_level(logging.WARNING, logger="jax"):
        bench.epoch()
    assert [record.getMessage()[:80] for record in caplog.records if "ompil" in record.getMessage()] == []


@pytest.mark.parametrize(("given", "expected"), [(None, "false"), ("true", "true")])
def test_jax_takes_gpu_memory_as_it_needs_it_unless_told_otherwise(given, expected):
    """On a GPU the report runs JAX beside PyTorch and Numba in one process: JAX must not take three quarters of
    the GPU's memory up front. A user's own setting wins."""
    variable = "XLA_PYTHON_CLIENT_PREALLOCATE"
    env = {k: v for k, v in os.environ.items() if k != variable} | ({variable: given} if given else {})
    code = f"import benchmarks.impls, os; print(os.environ[{variable!r}])"
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parent.parent)  # fmt: skip
    assert run.stdout.strip() == expected, run.stderr
