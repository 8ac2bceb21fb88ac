"""Whole training runs agree across the backends (the kernels themselves: tests/test_kernels.py)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lr_from_scratch.backends import make_backend
from lr_from_scratch.config import TrainConfig
from lr_from_scratch.data import prepare
from lr_from_scratch.optim import momentum_buffer_key
from lr_from_scratch.trainer import fit

from .conftest import REPO, run_module, run_python


def train(mnist, **options):
    config = TrainConfig(**options)
    splits = prepare(mnist, config)
    backend = make_backend(config, splits)
    state = fit(backend, config, progress=False, log=None)
    return state, backend


@pytest.mark.parametrize(
    "options", [dict(), dict(nesterov=True, weight_decay=1e-4, batch_size=200), dict(momentum=0.5, dampening=0.5)]
)
@pytest.mark.parametrize("backend", ["numba", "numba-naive"])
def test_float64_epochs_give_the_same_weights_as_numpy(mnist, options, backend):
    common = dict(limit=6000, epochs=2, dtype="float64", patience=0, **options)
    numpy_state, numpy_backend = train(mnist, backend="numpy", **common)
    state, compiled = train(mnist, backend=backend, **common)
    for name in ("weight", "bias", momentum_buffer_key(0)):
        diff = np.abs(compiled.state()[name] - numpy_backend.state()[name]).max()
        print(f"{name}: max |{backend} - numpy| = {diff:.2e}")
        assert diff <= 1e-10, f"{name}: max |{backend} - numpy| = {diff:.2e}"
    assert [r["train_accuracy"] for r in state.history] == [r["train_accuracy"] for r in numpy_state.history]
    assert compiled.evaluate("test")[1] == numpy_backend.evaluate("test")[1]


def test_float32_epochs_agree_within_rounding(mnist):
    common = dict(limit=6000, epochs=2, patience=0)
    _, numpy_backend = train(mnist, backend="numpy", **common)
    _, numba_backend = train(mnist, backend="numba", **common)
    diff = np.abs(numba_backend.state()["weight"] - numpy_backend.state()["weight"]).max()
    assert diff <= 1e-4, f"max |numba - numpy| = {diff:.2e}"
    assert abs(numba_backend.evaluate("test")[1] - numpy_backend.evaluate("test")[1]) <= 0.0005


def test_defaults_reach_92_percent_on_the_numpy_backend_too(tmp_path):
    result = run_module("lr_from_scratch.train", "--backend", "numpy", "--out", str(tmp_path), "--no-progress")
    assert result.returncode == 0, result.stderr
    assert "numpy backend" in result.stdout and "numba kernels" not in result.stdout
    assert json.loads((tmp_path / "metrics.json").read_text())["test_accuracy"] >= 0.92


def test_numba_run_reports_its_compile_time(tmp_path):
    result = run_module(
        "lr_from_scratch.train", "--limit", "2000", "--epochs", "1", "--out", str(tmp_path), "--no-progress"
    )
    assert result.returncode == 0, result.stderr
    assert "numba kernels " in result.stdout and "numba backend" in result.stdout
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["backend"] == "numba" and metrics["compile_seconds"] > 0


@pytest.mark.parametrize("module", ["lr_from_scratch.kernels.fused", "lr_from_scratch.kernels.naive"])
def test_warm_up_compiles_once_then_loads_from_the_cache(tmp_path, module):
    """Two fresh processes share an empty Numba cache: the first compiles, the second only loads. (JIT on, one
    thread, whatever the environment of the test run.)"""
    code = f"import {module} as k; seconds, compiled = k.warm_up('float64'); print(compiled, seconds > 0)"
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_DISABLE_JIT"}
    env.update(NUMBA_CACHE_DIR=str(tmp_path), NUMBA_NUM_THREADS="1")
    outputs = [run_python(code, env).stdout.split() for _ in range(2)]
    assert outputs == [["True", "True"], ["False", "True"]]
    assert any(tmp_path.rglob("*.nbi")), "Numba wrote no cache index"


def test_a_numba_without_the_caching_names_we_extend_still_imports_the_kernels():
    """The whole-source stamp needs names from numba.core.caching; where they are missing (another Numba),
    the kernels keep Numba's own locators instead of failing to import."""
    code = (
        "import numba.core.caching as c\n"
        "for name in ('CacheImpl', '_CacheImpl'):\n    c.__dict__.pop(name, None)\n"
        "import lr_from_scratch.kernels.fused as f\n"
        "print(type(f._train_serial._cache._impl.locator).__name__)"
    )
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_DISABLE_JIT"}
    assert not run_python(code, env).stdout.startswith("StampedByEverySource")


def test_an_edit_to_any_kernel_source_compiles_the_kernels_again(tmp_path):
    """Numba keys cached machine code to the kernel's own file, so an edit to a helper it inlines from another
    file (lanes.py, say) once left the kernels loaded from the cache, the edit without effect. On a copy of the
    package: compiled, then loaded; compiled again after an edit to kernels/lanes.py; loaded after an edit
    to a file no kernel is built from."""
    package = tmp_path / "lr_from_scratch"
    shutil.copytree(REPO / "lr_from_scratch", package, ignore=shutil.ignore_patterns("__pycache__"))
    code = (
        "import numpy as np, lr_from_scratch; from lr_from_scratch.data import sparse; "
        "sparse.SparseRows.from_dense(np.eye(3, dtype=np.uint8)); "
        "print(lr_from_scratch.__file__, sum(sum(k.stats.cache_misses.values()) "
        "for k in (sparse._count_nonzeros, sparse._copy_nonzeros)))"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_DISABLE_JIT", "PYTHONPATH")}
    env.update(NUMBA_CACHE_DIR=str(tmp_path / "cache"), NUMBA_NUM_THREADS="1")

    def compiled() -> int:
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path,
                              timeout=300)  # fmt: skip
        assert done.returncode == 0, done.stderr
        where, misses = done.stdout.split()
        assert Path(where).is_relative_to(package)  # the copy, not the checkout
        return int(misses)

    assert [compiled(), compiled()] == [2, 0]
    with open(package / "kernels" / "lanes.py", "a") as lanes:
        lanes.write("# an edit\n")
    assert [compiled(), compiled()] == [2, 0]
    with open(package / "plots.py", "a") as plots:
        plots.write("# an edit\n")
    assert compiled() == 0
