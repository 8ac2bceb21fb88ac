"""MNIST: locate, fetch, verify, parse; scaling, splits and batch order."""

from .mnist import MNIST, default_data_dir, load_mnist
from .pipeline import (
    MNIST_MEAN,
    MNIST_STD,
    Part,
    Splits,
    batch_slices,
    epoch_order,
    prepare,
    rng,
    scale_images,
    scaling,
    train_val_split,
)

__all__ = [
    "MNIST",
    "MNIST_MEAN",
    "MNIST_STD",
    "Part",
    "Splits",
    "batch_slices",
    "default_data_dir",
    "epoch_order",
    "load_mnist",
    "prepare",
    "rng",
    "scale_images",
    "scaling",
    "train_val_split",
]
