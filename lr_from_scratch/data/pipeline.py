"""From uint8 images to model inputs: scaling in one place, the seeded split, the seeded batch order.

Every random choice draws from its own ``numpy.random.Generator`` seeded by ``(seed, stream, *keys)``, so
any of them can be replayed alone: the validation split, the initial weights, and the order of each epoch
(which is what lets ``--resume`` continue an interrupted epoch exactly).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError, DataError

#: Mean and standard deviation of MNIST's 60,000 training pixels after ``/ 255``, rounded to 4 digits: the
#: figures every PyTorch tutorial normalises with. Every dataset computes its own the same way
#: (:attr:`~lr_from_scratch.data.datasets.LabelledImages.scaling`); for MNIST they are these (a test checks).
MNIST_MEAN = 0.1307
MNIST_STD = 0.3081

_STREAMS = {"split": 0, "init": 1, "order": 2}


def rng(seed: int, stream: str, *keys: int) -> np.random.Generator:
    """The generator for one purpose: ``stream`` is ``"split"``, ``"init"`` or ``"order"``."""
    return np.random.default_rng([seed, _STREAMS[stream], *keys])


def scale_images(images: np.ndarray, mean: float, std: float, dtype: str | np.dtype = "float32") -> np.ndarray:
    """Flatten and scale uint8 images: ``x = (p / 255 - mean) / std``.

    Computed in ``dtype`` in that order (what torchvision's ``ToTensor`` then ``Normalize`` do).

    Parameters
    ----------
    images : uint8 array, shape (n, 28, 28) or (n, 784)
    mean, std : float
    dtype : float32 or float64

    Returns
    -------
    array of ``dtype``, shape (n, 784)
    """
    dtype = np.dtype(dtype)
    x = images.reshape(len(images), -1).astype(dtype)
    x /= dtype.type(255)
    if (mean, std) != (0.0, 1.0):
        x -= dtype.type(mean)
        x /= dtype.type(std)
    return x


def train_val_split(n: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded split of ``range(n)``: ``round(n * val_fraction)`` validation indices, the rest for training.

    Both index arrays are sorted, so the training set keeps the file's order.
    """
    n_val = int(round(n * val_fraction))
    perm = rng(seed, "split").permutation(n)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    """The order in which epoch ``epoch`` (0-based) visits the ``n`` training samples."""
    return rng(seed, "order", epoch).permutation(n)


def batch_slices(n: int, batch_size: int) -> list[slice]:
    """Consecutive slices of ``batch_size`` covering ``range(n)``; the last may be shorter (``drop_last=False``)."""
    return [slice(start, min(start + batch_size, n)) for start in range(0, n, batch_size)]


def batch_starts(batches: list[slice]) -> np.ndarray:
    """Consecutive ``batches`` as int64 offsets (S + 1,): batch ``s`` is ``starts[s]:starts[s+1]``."""
    return np.array([s.start for s in batches] + [batches[-1].stop], dtype=np.int64)


@dataclass
class Part:
    """One part of the data: ``images`` uint8 (n, 784) as on disk, ``labels`` int64 (n,), and the ``indices``
    (n,) of its samples in the file they come from."""

    images: np.ndarray
    labels: np.ndarray
    indices: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class Splits:
    """The train, validation (None when the split is 0) and test parts, the scaling to apply to them, and the
    number of classes.

    Pixels stay uint8 here: each backend scales them its own way (:meth:`scaled`, or folded into its kernels).
    """

    train: Part
    val: Part | None
    test: Part
    mean: float
    std: float
    n_classes: int

    @property
    def n_features(self) -> int:
        """Pixels per image: 784 for MNIST."""
        return self.train.images.shape[1]

    def scaled(self, part: Part, dtype: str | np.dtype) -> tuple[np.ndarray, np.ndarray]:
        """``(x, y)``: the part's images through :func:`scale_images`, and its labels."""
        return scale_images(part.images, self.mean, self.std, dtype), part.labels


def split_for(n: int, config) -> tuple[np.ndarray, np.ndarray]:
    """:func:`train_val_split` of ``n`` samples under ``config``, refusing a split that cannot train.

    Raises :class:`ConfigError` when the validation part is empty although asked for, or when the batch size
    exceeds the training part.
    """
    train_idx, val_idx = train_val_split(n, config.val_split, config.seed)
    if config.val_split > 0 and len(val_idx) == 0:
        raise ConfigError(
            f"--val-split {config.val_split} of {n} samples leaves no validation sample: use more samples or "
            "--val-split 0"
        )
    if len(train_idx) == 0:
        raise ConfigError(f"--val-split {config.val_split} leaves none of the {n} samples to train on: lower it")
    if not 1 <= config.batch_size <= len(train_idx):
        if len(val_idx) and config.batch_size <= n:
            raise ConfigError(
                f"--batch-size {config.batch_size} is more than the {len(train_idx)} training samples that "
                f"--val-split {config.val_split} leaves of {n}: lower --batch-size or --val-split"
            )
        more = " or raise --limit" if config.limit is not None else ""
        raise ConfigError(
            f"--batch-size must be between 1 and the {len(train_idx)} training samples, got {config.batch_size}: "
            f"lower --batch-size{more}"
        )
    return train_idx, val_idx


def prepare(mnist, config) -> Splits:
    """Apply ``--limit``, the validation split and the scaling of ``config`` (a ``TrainConfig``) to ``mnist`` (a
    :class:`~lr_from_scratch.data.datasets.LabelledImages`): normalised with the training set's own mean and
    standard deviation, or just ``/ 255``."""
    n_all = len(mnist.train_images)
    if config.normalize and mnist.scaling[1] == 0:
        raise DataError(
            f"every training pixel is {round(mnist.scaling[0] * 255)}: there is nothing to learn from and no standard "
            "deviation to normalise by; check the image files (--data-dir)"
        )
    if config.limit is not None and config.limit > n_all:
        raise ConfigError(f"--limit must be between 1 and {n_all} (the training set), got {config.limit}")
    train_idx, val_idx = split_for(config.limit or n_all, config)

    def part(images, labels, idx=None) -> Part:
        idx = np.arange(len(labels)) if idx is None else idx
        images, labels = images[idx], labels[idx]
        return Part(images.reshape(len(images), -1), labels.astype(np.int64), idx)

    return Splits(
        train=part(mnist.train_images, mnist.train_labels, train_idx),
        val=part(mnist.train_images, mnist.train_labels, val_idx) if len(val_idx) else None,
        test=part(mnist.test_images, mnist.test_labels),
        mean=mnist.scaling[0] if config.normalize else 0.0,
        std=mnist.scaling[1] if config.normalize else 1.0,
        n_classes=mnist.n_classes,
    )
