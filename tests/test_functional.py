"""Softmax, cross-entropy and the gradient (P - Y) / B, checked against definitions and finite differences."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from lr_from_scratch.functional import (
    cross_entropy,
    cross_entropy_grad,
    linear,
    linear_grads,
    log_softmax,
    one_hot,
    softmax,
)
from lr_from_scratch.model import SoftmaxRegression

from .conftest import random_batch


def naive_softmax(z):
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def test_softmax_matches_the_definition_on_moderate_logits():
    z = np.random.default_rng(0).normal(size=(7, 10)) * 3
    np.testing.assert_allclose(softmax(z), naive_softmax(z), rtol=1e-14)
    np.testing.assert_allclose(log_softmax(z), np.log(naive_softmax(z)), rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(softmax(z).sum(axis=1), 1.0, rtol=1e-15)


def test_naive_softmax_overflows_where_the_shifted_one_does_not():
    z = np.array([[1e4, 0.0, -1e4]])
    with np.errstate(over="ignore", invalid="ignore"):
        assert np.isnan(naive_softmax(z)).any()
    np.testing.assert_array_equal(softmax(z), [[1.0, 0.0, 0.0]])
    np.testing.assert_array_equal(log_softmax(z), [[0.0, -1e4, -2e4]])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_extreme_logits_give_finite_loss_and_gradient(dtype):
    z = np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, -1e4], [1e4, 1e4, -1e4]], dtype=dtype)
    y = np.array([1, 2, 0])
    loss = cross_entropy(z, y)
    grad = cross_entropy_grad(z, y)
    assert np.isfinite(loss) and np.isfinite(grad).all()
    # row 0: log p_y = -2e4; row 1: uniform, log(1/3); row 2: two tied winners, log(1/2)
    assert float(loss) == pytest.approx((2e4 + np.log(3) + np.log(2)) / 3, rel=1e-6)


def test_cross_entropy_is_the_mean_negative_log_likelihood():
    rng = np.random.default_rng(1)
    z, y = rng.normal(size=(5, 4)), rng.integers(0, 4, 5)
    manual = -np.mean([np.log(naive_softmax(z)[i, y[i]]) for i in range(5)])
    assert cross_entropy(z, y) == pytest.approx(manual, rel=1e-14)
    # mean, not sum: duplicating the batch leaves the loss unchanged
    assert cross_entropy(np.vstack([z, z]), np.concatenate([y, y])) == pytest.approx(manual, rel=1e-14)


def test_gradient_is_p_minus_y_over_b():
    rng = np.random.default_rng(2)
    z, y = rng.normal(size=(6, 10)), rng.integers(0, 10, 6)
    np.testing.assert_allclose(cross_entropy_grad(z, y), (softmax(z) - one_hot(y, 10)) / 6, rtol=1e-15)
    np.testing.assert_allclose(cross_entropy_grad(z, y).sum(axis=1), 0.0, atol=1e-16)


def finite_difference(f, params, eps=1e-6):
    """Central differences of scalar f() with respect to each entry of each array in params (in place)."""
    grads = []
    for p in params:
        g = np.zeros_like(p)
        for i in np.ndindex(p.shape):
            old = p[i]
            p[i] = old + eps
            up = f()
            p[i] = old - eps
            down = f()
            p[i] = old
            g[i] = (up - down) / (2 * eps)
        grads.append(g)
    return grads


@pytest.mark.parametrize("batch", [1, 8])
def test_weight_and_bias_gradients_match_finite_differences(batch):
    rng = np.random.default_rng(3)
    x, y, w, b = random_batch(rng, batch, features=20, classes=5)
    model = SoftmaxRegression(w, b)
    _, _, dw, db = model.forward_backward(x, y)
    num_dw, num_db = finite_difference(lambda: float(cross_entropy(linear(x, w, b), y)), [w, b])
    for name, mine, numeric in (("dW", dw, num_dw), ("db", db, num_db)):
        rel = np.linalg.norm(mine - numeric) / np.linalg.norm(mine + numeric)
        assert rel < 1e-7, f"{name}: relative error {rel:.2e}, expected < 1e-7"


def test_linear_layout_is_nn_linear():
    rng = np.random.default_rng(4)
    x, _, w, b = random_batch(rng, 3, features=6, classes=4)
    assert w.shape == (4, 6)  # (out, in), like nn.Linear.weight
    np.testing.assert_allclose(linear(x, w, b), np.einsum("bd,kd->bk", x, w) + b, rtol=1e-14)
    dz = rng.normal(size=(3, 4))
    dw, db = linear_grads(x, dz)
    np.testing.assert_allclose(dw, np.einsum("bk,bd->kd", dz, x), rtol=1e-14)
    np.testing.assert_allclose(db, dz.sum(0), rtol=1e-14)


@given(
    arrays(np.float64, (3, 5), elements=st.floats(-50, 50)),
    st.floats(-1e4, 1e4),
)
def test_softmax_is_invariant_to_adding_a_constant(z, c):
    np.testing.assert_allclose(softmax(z + c), softmax(z), rtol=1e-9, atol=1e-12)
