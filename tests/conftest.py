"""Shared fixtures: the real MNIST (fetched once into the cache), and helpers to run the commands."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lr_from_scratch.data import load_mnist

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def mnist():
    """The real dataset, from the per-user cache (fetched and verified there on first use)."""
    return load_mnist(progress=False)


@pytest.fixture(scope="session")
def mnist_dir(mnist):
    """The folder that holds the verified IDX files."""
    from lr_from_scratch.data import default_data_dir

    return default_data_dir()


def run_module(module: str, *args: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``python -m module args`` as a user would (``env``: the whole environment); capture its output."""
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        capture_output=True,
        text=True,
        env=os.environ if env is None else env,
        cwd=REPO,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def run_python(code: str, env: dict, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``python -c code`` in a fresh interpreter with environment ``env``; it must succeed."""
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=REPO, timeout=timeout
    )
    assert result.returncode == 0, result.stderr
    return result


def assert_one_line_error(result: subprocess.CompletedProcess | tuple, code: int, *fragments: str) -> str:
    """The command failed with ``code`` and printed exactly one line, ``error: ...``, holding ``fragments``."""
    if isinstance(result, tuple):
        got_code, stderr = result
    else:
        got_code, stderr = result.returncode, result.stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert got_code == code, f"exit code {got_code}, expected {code}; stderr: {stderr}"
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}: {stderr}"
    assert lines[0].startswith("error: "), lines[0]
    assert "Traceback" not in stderr
    for fragment in fragments:
        assert fragment in lines[0], f"{fragment!r} not in {lines[0]!r}"
    return lines[0]


def random_batch(rng: np.random.Generator, batch: int, features: int = 784, classes: int = 10, dtype="float64"):
    """Random inputs, labels and parameters of the model's shapes."""
    x = rng.normal(size=(batch, features)).astype(dtype)
    y = rng.integers(0, classes, size=batch)
    w = (rng.normal(size=(classes, features)) * 0.05).astype(dtype)
    b = (rng.normal(size=classes) * 0.05).astype(dtype)
    return x, y, w, b
