"""The model as a PyTorch user writes it: flatten, then one ``nn.Linear``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from lr_from_scratch.runs import load_model


class LogisticRegression(nn.Module):
    """Multinomial logistic regression: ``logits = Linear(flatten(x))``.

    The softmax is not here: ``nn.CrossEntropyLoss`` takes logits and applies log-softmax itself (through
    log-sum-exp), which is both faster and numerically safer than ``log(softmax(z))``.
    """

    def __init__(self, n_features: int = 784, n_classes: int = 10):
        super().__init__()
        self.flatten = nn.Flatten()
        self.linear = nn.Linear(n_features, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 28, 28) or (B, 784) -> logits (B, 10)."""
        return self.linear(self.flatten(x))

    @classmethod
    def from_arrays(cls, weight: np.ndarray, bias: np.ndarray) -> LogisticRegression:
        """A model holding copies of ``weight`` (K, D) and ``bias`` (K,), in their dtype."""
        model = cls(weight.shape[1], weight.shape[0]).to(torch.from_numpy(weight).dtype)
        with torch.no_grad():
            model.linear.weight.copy_(torch.from_numpy(weight))
            model.linear.bias.copy_(torch.from_numpy(bias))
        return model

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """Copies of ``(weight (K, D), bias (K,))`` as NumPy arrays."""
        return (
            self.linear.weight.detach().cpu().numpy().copy(),
            self.linear.bias.detach().cpu().numpy().copy(),
        )


def load_npz(path: str | Path) -> tuple[LogisticRegression, float, float]:
    """A model from a ``model.npz`` written by either package, and the ``(mean, std)`` its inputs need."""
    saved = load_model(path)
    return LogisticRegression.from_arrays(saved.weight, saved.bias), saved.mean, saved.std
