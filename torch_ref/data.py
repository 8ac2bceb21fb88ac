"""The data as the PyTorch backend sees it: the same uint8 arrays as tensors on the device (the fast path),
through the textbook :class:`~torch_ref.textbook.MNISTDataset`, or through torchvision's own ``MNIST``."""

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


def torchvision_parts(splits: Splits, data_dir) -> dict[str, object]:
    """The parts as every PyTorch tutorial loads MNIST: ``torchvision.datasets.MNIST(root, train, transform)``
    with ``Compose([ToTensor(), Normalize((mean,), (std,))])``, over the verified files (no download), each part
    a ``Subset`` of the file's samples."""
    from torch.utils.data import Subset
    from torchvision import datasets, transforms

    from lr_from_scratch.data.datasets import torchvision_layout

    root = torchvision_layout(data_dir)
    transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((splits.mean,), (splits.std,))])
    train = datasets.MNIST(root, train=True, transform=transform, download=False)
    test = datasets.MNIST(root, train=False, transform=transform, download=False)
    parts = {"train": (train, splits.train), "val": (train, splits.val), "test": (test, splits.test)}
    return {name: Subset(data, part.indices.tolist()) if part else None for name, (data, part) in parts.items()}
