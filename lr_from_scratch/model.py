"""SoftmaxRegression: the parameters, their initialisation, and one forward/backward pass."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .data.pipeline import rng
from .functional import cross_entropy, cross_entropy_grad, linear, linear_grads, softmax

INITS = ("torch", "xavier", "zeros")


def init_params(
    n_features: int, n_classes: int, scheme: str, rng: np.random.Generator, dtype: str | np.dtype = "float32"
) -> tuple[np.ndarray, np.ndarray]:
    r"""Initial ``weight`` (K, D) and ``bias`` (K,).

    - ``"torch"``: ``nn.Linear``'s default, :math:`W, b \sim U(-1/\sqrt{D}, 1/\sqrt{D})`;
    - ``"xavier"``: ``nn.init.xavier_uniform_`` on W, :math:`U(\pm\sqrt{6 / (D + K)})`, and b = 0;
    - ``"zeros"``: both zero (fine for this convex model: the gradient breaks the symmetry).
    """
    if scheme == "torch":
        bound = 1.0 / np.sqrt(n_features)
        weight = rng.uniform(-bound, bound, size=(n_classes, n_features))
        bias = rng.uniform(-bound, bound, size=n_classes)
    elif scheme == "xavier":
        bound = np.sqrt(6.0 / (n_features + n_classes))
        weight = rng.uniform(-bound, bound, size=(n_classes, n_features))
        bias = np.zeros(n_classes)
    elif scheme == "zeros":
        weight, bias = np.zeros((n_classes, n_features)), np.zeros(n_classes)
    else:
        raise ValueError(f"init must be one of {', '.join(INITS)}, got {scheme!r}")
    return weight.astype(dtype), bias.astype(dtype)


def initial_params(config, n_features: int, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """The initial ``weight`` (K, D) and ``bias`` (K,) of a run under ``config`` (a ``TrainConfig``):
    :func:`init_params` with ``config.init``, drawn from the run's own ``"init"`` generator, in ``config.dtype``.

    Every backend starts here, so runs with the same seed start from the same weights whatever computes them.
    """
    return init_params(n_features, n_classes, config.init, rng(config.seed, "init"), config.dtype)


@dataclass
class SoftmaxRegression:
    """Multinomial logistic regression ``p(y | x) = softmax(W x + b)``.

    Attributes
    ----------
    weight : (K, D) array, laid out like ``nn.Linear.weight``
    bias : (K,) array
    """

    weight: np.ndarray
    bias: np.ndarray

    @classmethod
    def initialised(cls, n_features, n_classes, scheme, rng, dtype="float32") -> SoftmaxRegression:
        """A model with parameters from :func:`init_params` (for teaching: the backends use
        :func:`initial_params`)."""
        return cls(*init_params(n_features, n_classes, scheme, rng, dtype))

    def logits(self, x: np.ndarray) -> np.ndarray:
        """x : (B, D) -> (B, K)."""
        return linear(x, self.weight, self.bias)

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """x : (B, D) -> (B, K) class probabilities (for teaching: nothing in the training path calls it)."""
        return softmax(self.logits(x))

    def predict(self, x: np.ndarray) -> np.ndarray:
        """x : (B, D) -> (B,) most probable class (for teaching: nothing in the training path calls it)."""
        return self.logits(x).argmax(axis=1)

    def forward_backward(self, x: np.ndarray, y: np.ndarray):
        """Loss, number correct and gradients for one batch.

        x : (B, D), y : (B,) -> ``(loss, n_correct, dW (K, D), db (K,))``.
        """
        z = self.logits(x)
        dw, db = linear_grads(x, cross_entropy_grad(z, y))
        return float(cross_entropy(z, y)), int((z.argmax(axis=1) == y).sum()), dw, db
