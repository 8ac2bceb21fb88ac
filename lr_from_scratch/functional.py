"""Softmax, log-softmax, cross-entropy and its gradient: plain NumPy, exact in float64.

Shapes: ``B`` samples, ``K`` classes, ``D`` features. Logits ``Z`` are (B, K), labels ``y`` are (B,) integers.
"""

from __future__ import annotations

import numpy as np


def softmax(z: np.ndarray) -> np.ndarray:
    r"""Row-wise softmax through the max shift.

    .. math:: p_{ik} = \frac{e^{z_{ik} - m_i}}{\sum_j e^{z_{ij} - m_i}}, \quad m_i = \max_j z_{ij}

    Subtracting ``m_i`` changes nothing mathematically but keeps every exponent <= 0, so ``exp`` cannot
    overflow; the largest term is ``e^0 = 1``, so the denominator is at least 1.

    z : (B, K) -> (B, K), rows summing to 1.
    """
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def log_softmax(z: np.ndarray) -> np.ndarray:
    r"""Row-wise log-softmax through log-sum-exp.

    .. math:: \log p_{ik} = (z_{ik} - m_i) - \log \sum_j e^{z_{ij} - m_i}

    Never takes ``log(0)``: the sum is at least 1. z : (B, K) -> (B, K).
    """
    shifted = z - z.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def cross_entropy(z: np.ndarray, y: np.ndarray) -> np.floating:
    r"""Mean cross-entropy of logits ``z`` (B, K) against integer labels ``y`` (B,).

    .. math:: L = -\frac{1}{B} \sum_{i=1}^{B} \log p_{i, y_i}

    The mean over the batch is PyTorch's default ``reduction="mean"``.
    """
    return -log_softmax(z)[np.arange(len(y)), y].mean()


def one_hot(y: np.ndarray, n_classes: int, dtype: str | np.dtype = "float64") -> np.ndarray:
    """``Y[i, k] = 1`` if ``y[i] == k`` else 0. y : (B,) -> (B, K).

    For teaching (and the tests): :func:`cross_entropy_grad` subtracts 1 at the label instead of building ``Y``.
    """
    out = np.zeros((len(y), n_classes), dtype=dtype)
    out[np.arange(len(y)), y] = 1
    return out


def cross_entropy_grad(z: np.ndarray, y: np.ndarray) -> np.ndarray:
    r"""Gradient of :func:`cross_entropy` with respect to the logits.

    .. math:: \frac{\partial L}{\partial Z} = \frac{P - Y}{B}

    z : (B, K), y : (B,) -> (B, K).
    """
    p = softmax(z)
    p[np.arange(len(y)), y] -= 1
    return p / len(y)


def linear(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    r"""Logits of a linear layer laid out like ``nn.Linear``: :math:`Z = X W^\top + b`.

    x : (B, D), weight : (K, D), bias : (K,) -> (B, K).
    """
    return x @ weight.T + bias


def linear_grads(x: np.ndarray, dz: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    r"""Parameter gradients of :func:`linear` given ``dz = dL/dZ``.

    .. math:: \frac{\partial L}{\partial W} = (dZ)^\top X, \qquad \frac{\partial L}{\partial b} = \sum_i dZ_{i\cdot}

    x : (B, D), dz : (B, K) -> dW : (K, D), db : (K,).
    """
    return dz.T @ x, dz.sum(axis=0)
