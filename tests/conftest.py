"""Shared fixtures: the real MNIST (fetched once into the cache), and helpers to run the commands."""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lr_from_scratch.data import load_mnist

REPO = Path(__file__).resolve().parent.parent

# Tests of Ctrl-C send SIGINT, to this process or to the commands it starts. A test run started in the background
# by a script (`make test &`) has SIGINT ignored, and the commands would inherit that: they would never see it.
signal.signal(signal.SIGINT, signal.default_int_handler)


def load_script(name: str):
    """``scripts/<name>.py`` as a module (the scripts are run, not installed)."""
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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


@pytest.fixture(scope="session")
def site(tmp_path_factory) -> Path:
    """The docs site, built as ``make docs`` builds it, into a temporary folder."""
    vendored = REPO / "docs" / "javascripts" / "vendor" / "VERSION"
    assert vendored.is_file(), (
        "the site's scripts are not vendored: run python scripts/vendor_assets.py (make test does)"
    )
    return load_script("browser").build_site(tmp_path_factory.mktemp("site"))


@pytest.fixture(scope="session")
def browser():
    """Headless Chromium with no network beyond loopback (a proxy that does not exist), logging the console."""
    driver = load_script("browser").chromium()
    yield driver
    driver.quit()
