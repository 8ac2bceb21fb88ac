"""The data as PyTorch sees it: the same uint8 arrays, as tensors on the device or as a textbook ``Dataset``."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from lr_from_scratch.data import Part, Splits

DTYPES = {"float32": torch.float32, "float64": torch.float64}


class MNISTDataset(Dataset):
    """The textbook pipeline: one sample at a time, scaled by a per-sample transform.

    ``x = (p / 255 - mean) / std`` in ``dtype``, in that order: what torchvision's ``ToTensor`` and
    ``Normalize`` do, and what :func:`lr_from_scratch.data.scale_images` does for a whole array.
    """

    def __init__(self, part: Part, mean: float, std: float, dtype: torch.dtype = torch.float32):
        self.images, self.labels = part.images, part.labels
        self.mean, self.std, self.dtype = mean, std, dtype

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        x = torch.tensor(self.images[i], dtype=self.dtype) / 255  # a copy: the arrays may be read-only
        x = (x - self.mean) / self.std
        return x, int(self.labels[i])


def as_tensors(splits: Splits, part: Part, dtype: torch.dtype, device: torch.device):
    """The whole part, scaled, as ``(x (n, 784), y (n,))`` tensors on ``device``: the fast path."""
    x, y = splits.scaled(part, np.dtype(str(dtype).removeprefix("torch.")))
    return torch.from_numpy(x).to(device), torch.from_numpy(y).to(device)
