"""Initialisation schemes, SGD with PyTorch's rule, and the step schedule."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lr_from_scratch.model import init_params
from lr_from_scratch.optim import SGD, step_lr


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_torch_default_init_bounds_and_spread(dtype):
    w, b = init_params(784, 10, "torch", np.random.default_rng(0), dtype)
    assert w.shape == (10, 784) and b.shape == (10,) and w.dtype == dtype and b.dtype == dtype
    bound = 1 / np.sqrt(784)
    assert np.abs(w).max() <= bound and np.abs(b).max() <= bound
    assert w.std() == pytest.approx(bound / np.sqrt(3), rel=0.02)  # std of U(-a, a) is a / sqrt(3)


def test_xavier_and_zeros():
    w, b = init_params(784, 10, "xavier", np.random.default_rng(0))
    bound = np.sqrt(6 / (784 + 10))
    assert np.abs(w).max() <= bound and w.std() == pytest.approx(bound / np.sqrt(3), rel=0.02)
    assert not b.any()
    w, b = init_params(784, 10, "zeros", np.random.default_rng(0))
    assert not w.any() and not b.any()
    with pytest.raises(ValueError, match="init must be one of torch, xavier, zeros, got 'he'"):
        init_params(3, 2, "he", np.random.default_rng(0))


def test_sgd_state_round_trip_continues_identically():
    rng = np.random.default_rng(6)
    grads = [rng.normal(size=3) for _ in range(6)]
    a = SGD([np.zeros(3)], lr=0.1, momentum=0.9)
    for g in grads[:3]:
        a.step([g])
    b = SGD([a.params[0].copy()], lr=0.1, momentum=0.9)
    b.load_state_dict(a.state_dict())
    for g in grads[3:]:
        a.step([g])
        b.step([g])
    np.testing.assert_array_equal(a.params[0], b.params[0])


def test_step_lr_matches_torch_steplr():
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=0.01)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=3, gamma=0.1)
    for epoch in range(12):
        assert step_lr(0.01, epoch, 3, 0.1) == opt.param_groups[0]["lr"], f"epoch {epoch}"
        opt.step()
        sched.step()
    assert step_lr(0.01, 100, 0, 0.1) == 0.01
