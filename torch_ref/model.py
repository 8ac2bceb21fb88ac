"""The PyTorch model (:class:`~torch_ref.textbook.LogisticRegression`) and NumPy arrays, both ways."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from lr_from_scratch.saved import load_model

from .textbook import LogisticRegression


def from_arrays(weight: np.ndarray, bias: np.ndarray) -> LogisticRegression:
    """A model holding copies of ``weight`` (K, D) and ``bias`` (K,), in their dtype."""
    model = LogisticRegression(weight.shape[1], weight.shape[0]).to(torch.from_numpy(weight).dtype)
    with torch.no_grad():
        model.linear.weight.copy_(torch.from_numpy(weight))
        model.linear.bias.copy_(torch.from_numpy(bias))
    return model


def to_arrays(model: LogisticRegression) -> tuple[np.ndarray, np.ndarray]:
    """Copies of the model's ``(weight (K, D), bias (K,))`` as NumPy arrays."""
    return model.linear.weight.detach().cpu().numpy().copy(), model.linear.bias.detach().cpu().numpy().copy()


def load_npz(path: str | Path) -> tuple[LogisticRegression, float, float]:
    """A model from a ``model.npz`` written by either package, and the ``(mean, std)`` its inputs need."""
    saved = load_model(path)
    return from_arrays(saved.weight, saved.bias), saved.mean, saved.std
