"""Kernel 1: the NumPy reference ported to Numba as directly as it goes. The fused kernels start from here.

Dense float inputs (already scaled), the ``(K, D)`` layout of ``nn.Linear``, and the steps of
:mod:`lr_from_scratch.functional` and :class:`lr_from_scratch.optim.SGD` one after the other: logits, softmax
through the max shift, loss, ``(P - Y) / B``, the two gradients, then PyTorch's SGD rule. No sparsity, no
folding, no threads, no vector tricks: ``python -m benchmarks.report --impls numba-naive,numba`` shows what
those are worth. Numba's ``np.dot`` needs SciPy, so the products are loops.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .llvm import CACHE, compile_report


@njit(cache=CACHE)
def train_steps(x, y, order, starts, W, b, bufW, bufb, first, lr, momentum, dampening, weight_decay, nesterov):
    """SGD steps on ``order[starts[s]:starts[s+1]]`` for each step ``s``; returns (loss sum, correct).

    x (n, D) float, y (n,) int64, order (n,) and starts (S + 1,) int64; W (K, D), b (K,) and their momentum
    buffers bufW, bufb are updated in place; first (1,) bool says the buffers are still empty.
    """
    K, D = W.shape
    dW, db, z = np.empty_like(W), np.empty_like(b), np.empty_like(b)
    loss_sum, correct = 0.0, 0
    for s in range(len(starts) - 1):
        dW[:] = 0.0
        db[:] = 0.0
        batch = order[starts[s] : starts[s + 1]]
        for i in batch:
            for k in range(K):  # z = W x + b
                z[k] = b[k]
                for d in range(D):
                    z[k] += W[k, d] * x[i, d]
            m = z.max()
            p = np.exp(z - m)  # softmax through the max shift
            loss_sum -= z[y[i]] - m - np.log(p.sum())  # -log p_y, through log-sum-exp
            correct += np.argmax(z) == y[i]
            g = p / p.sum()  # dL/dz = (p - onehot(y)) / B
            g[y[i]] -= 1.0
            g /= len(batch)
            for k in range(K):  # dW += g x^T, db += g
                db[k] += g[k]
                for d in range(D):
                    dW[k, d] += g[k] * x[i, d]
        _sgd(W, dW, bufW, first[0], lr, momentum, dampening, weight_decay, nesterov)
        _sgd(b, db, bufb, first[0], lr, momentum, dampening, weight_decay, nesterov)
        first[0] = False
    return loss_sum, correct


@njit(cache=CACHE)
def _sgd(p, g, buf, first, lr, momentum, dampening, weight_decay, nesterov):
    """``torch.optim.SGD``'s step for one parameter ``p`` with gradient ``g``, in place (as :class:`SGD`)."""
    g = g + weight_decay * p
    if momentum != 0:
        if first:
            buf[:] = g
        else:
            buf[:] = momentum * buf + (1 - dampening) * g
        g = g + momentum * buf if nesterov else buf
    p -= lr * g


def warm_up(dtype: str | np.dtype) -> tuple[float, bool]:
    """Compile (or load from Numba's cache) :func:`train_steps` for ``dtype``; returns ``(seconds, compiled)``."""

    def run():
        t = np.dtype(dtype).type
        W, b = np.zeros((3, 4), dtype=dtype), np.zeros(3, dtype=dtype)
        x, index = np.ones((2, 4), dtype=dtype), np.arange(2)
        args = (t(0.1), t(0.9), t(0.0), t(0.0), False)
        train_steps(x, index, index, index, W, b, np.zeros_like(W), np.zeros_like(b), np.ones(1, np.bool_), *args)

    return compile_report((train_steps,), run)
