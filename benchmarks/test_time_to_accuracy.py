"""Seconds of training until the test accuracy first reaches 92%, with the default settings."""

from __future__ import annotations

import pytest

from .conftest import EXTRA
from .impls import time_to_accuracy


@pytest.mark.parametrize("impl", ["numba", "numpy", "torch-cpu"])
def test_time_to_92_percent(benchmark, mnist, impl):
    benchmark.group = "time to 92% test accuracy (defaults)"
    reached = benchmark.pedantic(time_to_accuracy, args=(mnist, impl), rounds=1, iterations=1)
    assert reached["seconds"] is not None, f"{impl} never reached 92% test accuracy"
    benchmark.extra_info.update(training_seconds=reached["seconds"], epoch=reached["epoch"])
    EXTRA[f"{impl}: seconds of training to 92% (epoch {reached['epoch']})"] = reached["seconds"]
