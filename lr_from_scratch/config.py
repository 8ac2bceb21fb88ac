"""The training configuration shared by both packages, validated in one place."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from .errors import ConfigError
from .model import INITS

DTYPES = ("float32", "float64")
SCRATCH_BACKENDS = ("numba", "numpy", "numba-naive")  #: the backends of lr_from_scratch itself
BACKENDS = (*SCRATCH_BACKENDS, "torch")  #: torch: a run of torch_ref


@dataclass(frozen=True)
class TrainConfig:
    """Every option of a training run; field ``name`` is the command-line flag ``--name`` (``_`` -> ``-``)."""

    epochs: int = 20
    batch_size: int = 64
    lr: float = 0.01
    momentum: float = 0.9
    dampening: float = 0.0
    nesterov: bool = False
    weight_decay: float = 0.0
    lr_step: int = 10
    lr_gamma: float = 0.1
    patience: int = 10  # = lr_step: see docs/training.md (5 stops before the first decay on most seeds)
    val_split: float = 0.1
    normalize: bool = True
    init: str = "torch"
    seed: int = 0
    dtype: str = "float32"
    backend: str = "numba"
    limit: int | None = None

    def validate(self) -> TrainConfig:
        """Raise :class:`ConfigError` (one line: flag, value got, range expected) for the first bad option."""
        _require(self.epochs >= 1, "epochs", self.epochs, "an integer >= 1")
        _require(self.batch_size >= 1, "batch-size", self.batch_size, "an integer >= 1")
        _require(math.isfinite(self.lr) and self.lr > 0, "lr", self.lr, "a number > 0, such as 0.01")
        _require(0 <= self.momentum < 1, "momentum", self.momentum, "a number in [0, 1), such as 0.9")
        _require(0 <= self.dampening <= 1, "dampening", self.dampening, "a number in [0, 1]")
        if self.nesterov and (self.momentum == 0 or self.dampening != 0):
            raise ConfigError(
                f"--nesterov needs --momentum > 0 and --dampening 0, got momentum {self.momentum} and "
                f"dampening {self.dampening}: add --momentum 0.9 or drop --nesterov"
            )
        _require(
            math.isfinite(self.weight_decay) and self.weight_decay >= 0,
            "weight-decay",
            self.weight_decay,
            ">= 0",
        )
        _require(self.lr_step >= 0, "lr-step", self.lr_step, "an integer >= 0 (0 keeps the rate constant)")
        _require(0 < self.lr_gamma <= 1, "lr-gamma", self.lr_gamma, "a number in (0, 1]")
        _require(self.patience >= 0, "patience", self.patience, "an integer >= 0 (0 turns early stopping off)")
        _require(0 <= self.val_split < 1, "val-split", self.val_split, "a fraction in [0, 1), such as 0.1")
        _require(self.init in INITS, "init", self.init, f"one of {', '.join(INITS)}")
        _require(self.dtype in DTYPES, "dtype", self.dtype, f"one of {', '.join(DTYPES)}")
        largest = float(np.finfo(self.dtype).max)
        _require(self.lr <= largest, "lr", self.lr, f"at most {largest:.4g}, the largest {self.dtype}")
        _require(self.weight_decay <= largest, "weight-decay", self.weight_decay, f"at most {largest:.4g}")
        _require(self.backend in BACKENDS, "backend", self.backend, f"one of {', '.join(BACKENDS)}")
        _require(self.seed >= 0, "seed", self.seed, "an integer >= 0")
        _require(self.limit is None or self.limit >= 1, "limit", self.limit, "an integer >= 1")
        return self

    def to_dict(self) -> dict:
        """Plain JSON-ready dictionary."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown option(s) {', '.join(unknown)}; expected some of {', '.join(sorted(known))}")
        return cls(**values)


def _require(ok: bool, flag: str, got, expected: str) -> None:
    if not ok:
        raise ConfigError(f"--{flag} must be {expected}, got {got}")
