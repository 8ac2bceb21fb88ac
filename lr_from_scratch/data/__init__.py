"""The datasets (MNIST and its kin): locate, fetch, verify, parse; scaling, splits and batch order; sparse rows."""

from .datasets import DATASETS, LabelledImages, default_data_dir, load_dataset, load_mnist
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
    train_val_split,
)
from .sparse import SparseRows

__all__ = [
    "DATASETS",
    "LabelledImages",
    "MNIST_MEAN",
    "MNIST_STD",
    "Part",
    "SparseRows",
    "Splits",
    "batch_slices",
    "batch_starts",
    "default_data_dir",
    "epoch_order",
    "load_dataset",
    "load_mnist",
    "prepare",
    "rng",
    "scale_images",
    "train_val_split",
]
