"""Evaluation over a whole set, in chunks so memory stays small."""

from __future__ import annotations

import numpy as np

from .functional import log_softmax


def evaluate(weight: np.ndarray, bias: np.ndarray, x: np.ndarray, y: np.ndarray, chunk: int = 8192):
    """Mean cross-entropy and accuracy (a fraction) of ``softmax(x W^T + b)`` on ``(x, y)``.

    weight : (K, D), bias : (K,), x : (N, D), y : (N,) -> ``(loss, accuracy)`` as floats.
    """
    loss_sum, correct = 0.0, 0
    for start in range(0, len(x), chunk):
        z = x[start : start + chunk] @ weight.T + bias
        yc = y[start : start + chunk]
        loss_sum -= float(log_softmax(z)[np.arange(len(yc)), yc].sum(dtype=np.float64))
        correct += int((z.argmax(axis=1) == yc).sum())
    return loss_sum / len(x), correct / len(x)
