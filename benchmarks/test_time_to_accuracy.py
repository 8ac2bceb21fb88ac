"""Seconds of training until the test accuracy first reaches 92%, with the default settings."""

from __future__ import annotations

import pytest

from lr_from_scratch.backends import make_backend
from lr_from_scratch.config import TrainConfig
from lr_from_scratch.data import prepare
from lr_from_scratch.kernels import warm_up
from lr_from_scratch.trainer import fit

from .conftest import EXTRA

TARGET = 0.92


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_time_to_92_percent(benchmark, mnist, backend):
    config = TrainConfig(backend=backend)
    splits = prepare(mnist, config)
    warm_up(config.dtype)
    reached = {}

    def train():
        model = make_backend(config, splits)

        def check(state):
            if "seconds" not in reached and model.evaluate("test")[1] >= TARGET:
                reached["seconds"], reached["epoch"] = state.train_seconds, state.epoch

        fit(model, config, len(splits.train), progress=False, log=None, on_epoch_end=check)

    benchmark.group = "time to 92% test accuracy (defaults)"
    benchmark.pedantic(train, rounds=1, iterations=1)
    assert "seconds" in reached, f"the {backend} backend never reached {TARGET:.0%} test accuracy"
    benchmark.extra_info.update(training_seconds_to_92=reached["seconds"], epoch=reached["epoch"])
    EXTRA[f"{backend}: seconds of training to {TARGET:.0%} test accuracy (epoch {reached['epoch']})"] = reached[
        "seconds"
    ]
