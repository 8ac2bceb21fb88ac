"""Backends: the model's math behind one small interface, so one training loop drives them all.

A backend owns the parameters, the optimizer and the data (on its device). The loop in :mod:`.trainer` only
asks it to run a few steps, to evaluate, and to hand over or take back its state as NumPy arrays.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from .config import TrainConfig
from .data.pipeline import rng
from .metrics import evaluate
from .model import SoftmaxRegression, init_params
from .optim import SGD


class Backend(Protocol):
    """What the training loop needs from an implementation."""

    #: How many batches one :meth:`run_steps` call may take (the loop checks for Ctrl-C in between).
    steps_per_call: int

    def run_steps(self, order: np.ndarray, batches: list[slice], lr: float) -> tuple[float, int]:
        """Train on ``order[s]`` for each slice ``s`` in turn; return (sum of batch loss x batch size, correct)."""

    def evaluate(self, split: str) -> tuple[float, float]:
        """``(mean loss, accuracy)`` on ``"val"`` or ``"test"``."""

    def params(self) -> tuple[np.ndarray, np.ndarray]:
        """Copies of ``(weight (K, D), bias (K,))``."""

    def state(self) -> dict[str, np.ndarray]:
        """Parameters and optimizer buffers, enough to continue exactly."""

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        """Restore what :meth:`state` returned; given just ``weight`` and ``bias``, the momentum buffers empty."""


class NumpyBackend:
    """The readable reference: :class:`SoftmaxRegression` and :class:`SGD`, one batch at a time."""

    steps_per_call = 8

    def __init__(self, model: SoftmaxRegression, config: TrainConfig, train, val=None, test=None):
        self.model = model
        self.data = {"train": train, "val": val, "test": test}
        self.optimizer = SGD(
            [model.weight, model.bias],
            lr=config.lr,
            momentum=config.momentum,
            dampening=config.dampening,
            weight_decay=config.weight_decay,
            nesterov=config.nesterov,
        )

    def run_steps(self, order, batches, lr):
        x, y = self.data["train"]
        self.optimizer.lr = lr
        loss_sum, correct = 0.0, 0
        for batch in batches:
            idx = order[batch]
            loss, n_correct, dw, db = self.model.forward_backward(x[idx], y[idx])
            self.optimizer.step([dw, db])
            loss_sum += loss * len(idx)
            correct += n_correct
        return loss_sum, correct

    def evaluate(self, split):
        x, y = self.data[split]
        return evaluate(self.model.weight, self.model.bias, x, y)

    def params(self):
        return self.model.weight.copy(), self.model.bias.copy()

    def state(self):
        return {
            "weight": self.model.weight.copy(),
            "bias": self.model.bias.copy(),
            **self.optimizer.state_dict(),
        }

    def load_state(self, state):
        self.model.weight[...] = state["weight"]
        self.model.bias[...] = state["bias"]
        self.optimizer.load_state_dict(state)


class NumbaBackend:
    """The fast path: :mod:`.kernels` on the images' uint8 non-zero pixels, normalisation folded in.

    ``train`` and friends are ``(rows, labels)`` with ``rows`` a :class:`~lr_from_scratch.kernels.SparseRows`
    of raw values; the model sees ``x = a * value + c``.
    """

    steps_per_call = 64

    def __init__(self, weight, bias, config: TrainConfig, a: float, c: float, train, val=None, test=None):
        from .kernels import FoldedLinear

        self.layer = FoldedLinear(weight, bias, a, c)
        self.config = config
        self.data = {"train": train, "val": val, "test": test}

    def run_steps(self, order, batches, lr):
        rows, labels = self.data["train"]
        c = self.config
        return self.layer.train_steps(
            rows, labels, order, batches, lr, c.momentum, c.dampening, c.weight_decay, c.nesterov
        )

    def evaluate(self, split):
        rows, labels = self.data[split]
        loss, accuracy, _ = self.layer.evaluate(rows, labels)
        return loss, accuracy

    def params(self):
        return self.layer.params()

    def state(self):
        weight, bias = self.layer.params()
        buffers = self.layer.buffers()
        state = {"weight": weight, "bias": bias}
        if buffers is not None:
            state["momentum_buffer_0"], state["momentum_buffer_1"] = buffers
        return state

    def load_state(self, state):
        self.layer.set_params(state["weight"], state["bias"])
        has_buffers = "momentum_buffer_0" in state
        self.layer.set_buffers((state["momentum_buffer_0"], state["momentum_buffer_1"]) if has_buffers else None)


def make_backend(config: TrainConfig, splits) -> NumpyBackend | NumbaBackend:
    """A freshly initialised backend of kind ``config.backend`` over ``splits`` (a
    :class:`~lr_from_scratch.data.Splits`); both start from the same initial weights."""
    weight, bias = init_params(784, 10, config.init, rng(config.seed, "init"), config.dtype)
    if config.backend == "numba":
        from .kernels import SparseRows

        def rows(part):
            return SparseRows.from_dense(part.images), part.labels

        val = rows(splits.val) if splits.val is not None else None
        a, c = 1.0 / (255.0 * splits.std), -splits.mean / splits.std
        return NumbaBackend(weight, bias, config, a, c, rows(splits.train), val, rows(splits.test))
    val = splits.scaled(splits.val, config.dtype) if splits.val is not None else None
    train, test = splits.scaled(splits.train, config.dtype), splits.scaled(splits.test, config.dtype)
    return NumpyBackend(SoftmaxRegression(weight, bias), config, train, val, test)


def array_backend(config: TrainConfig, weight, bias, train, val=None) -> NumpyBackend | NumbaBackend:
    """A backend of kind ``config.backend`` over feature arrays ``(x (n, D) float, y (n,) int)``, taken as they
    are (no scaling): what the scikit-learn style estimator trains."""
    if config.backend == "numba":
        from .kernels import SparseRows

        def rows(part):
            return None if part is None else (SparseRows.from_dense(part[0]), part[1])

        return NumbaBackend(weight, bias, config, 1.0, 0.0, rows(train), rows(val))
    return NumpyBackend(SoftmaxRegression(weight, bias), config, train, val)
