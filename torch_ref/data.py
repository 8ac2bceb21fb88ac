"""The data as the PyTorch backend sees it: the same uint8 arrays, as tensors on the device (the fast path) or
through the textbook :class:`~torch_ref.textbook.MNISTDataset`."""

from __future__ import annotations

import numpy as np
import torch

from lr_from_scratch.data import Part, Splits

from .textbook import MNISTDataset

DTYPES = {"float32": torch.float32, "float64": torch.float64}


def as_dataset(splits: Splits, part: Part, dtype: torch.dtype) -> MNISTDataset:
    """The part as the textbook ``Dataset``, scaled one sample at a time as ``scale_images`` scales them all."""
    return MNISTDataset(part.images, part.labels, splits.mean, splits.std, dtype)


def as_tensors(splits: Splits, part: Part, dtype: torch.dtype, device: torch.device):
    """The whole part, scaled, as ``(x (n, 784), y (n,))`` tensors on ``device``: the fast path."""
    x, y = splits.scaled(part, np.dtype(str(dtype).removeprefix("torch.")))
    return torch.from_numpy(x).to(device), torch.from_numpy(y).to(device)
