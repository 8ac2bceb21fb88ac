"""MNIST: locate, fetch, verify, parse; scaling, splits and batch order; images as sparse rows."""

from .mnist import MNIST, default_data_dir, load_mnist
from .pipeline import (
    MNIST_MEAN,
    MNIST_STD,
    Part,
    Splits,
    batch_slices,
    batch_starts,
    epoch_order,
    prepare,
    rng,
    scale_images,
    scaling,
    train_val_split,
)
from .sparse import SparseRows

__all__ = [
    "MNIST",
    "MNIST_MEAN",
    "MNIST_STD",
    "Part",
    "SparseRows",
    "Splits",
    "batch_slices",
    "batch_starts",
    "default_data_dir",
    "epoch_order",
    "load_mnist",
    "prepare",
    "rng",
    "scale_images",
    "scaling",
    "train_val_split",
]
