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
from .model import SoftmaxRegression
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
        """Restore what :meth:`state` returned (or just ``weight`` and ``bias``)."""


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


def make_backend(config: TrainConfig, splits) -> NumpyBackend:
    """A freshly initialised backend over ``splits`` (a :class:`~lr_from_scratch.data.Splits`)."""
    n_features, n_classes = splits.x_train.shape[1], 10
    model = SoftmaxRegression.initialised(n_features, n_classes, config.init, rng(config.seed, "init"), config.dtype)
    val = (splits.x_val, splits.y_val) if splits.x_val is not None else None
    return NumpyBackend(model, config, (splits.x_train, splits.y_train), val, (splits.x_test, splits.y_test))
