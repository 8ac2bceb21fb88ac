"""The training configuration shared by both packages, validated in one place."""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass

import numpy as np

from .data.datasets import DATASETS
from .errors import ConfigError
from .model import INITS

DTYPES = ("float32", "float64")
SCRATCH_BACKENDS = ("numba", "numpy", "numba-naive", "cuda")  #: the backends of lr_from_scratch itself
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
    dataset: str = "mnist"
    limit: int | None = None

    def validate(self, flags: bool = True, backends: tuple[str, ...] = BACKENDS) -> TrainConfig:
        """Raise :class:`ConfigError` (one line: option, value got, range expected) for the first bad option.

        ``flags``: name the options as the command line does (``--batch-size``); otherwise as parameters
        (``batch_size``), as the estimator does. ``backends``: those the caller can run. Types come first: each
        option has the type of its default.
        """

        def require(ok: bool, name: str, expected: str) -> None:
            if not ok:
                raise ConfigError(f"{option_name(name, flags)} must be {expected}, got {getattr(self, name)!r}")

        choices = {"init": INITS, "dtype": DTYPES, "backend": backends, "dataset": DATASETS}
        one_of = {name: f"one of {', '.join(names)}" for name, names in choices.items()}
        for field in dataclasses.fields(self):
            value, (kind, described) = getattr(self, field.name), _KINDS[type(field.default)]
            is_bool = isinstance(value, bool | np.bool_)
            ok = is_bool if kind is bool else isinstance(value, kind) and not is_bool
            require(ok or (value is None and field.default is None), field.name, one_of.get(field.name, described))
        require(self.epochs >= 1, "epochs", "an integer >= 1")
        require(self.batch_size >= 1, "batch_size", "an integer >= 1")
        require(math.isfinite(self.lr) and self.lr > 0, "lr", "a number > 0, such as 0.01")
        require(0 <= self.momentum < 1, "momentum", "a number in [0, 1), such as 0.9")
        require(0 <= self.dampening <= 1, "dampening", "a number in [0, 1]")
        if self.nesterov and (self.momentum == 0 or self.dampening != 0):
            momentum, dampening, nesterov = (option_name(n, flags) for n in ("momentum", "dampening", "nesterov"))
            fixes = [f"{momentum} 0.9"] * (self.momentum == 0) + [f"{dampening} 0"] * (self.dampening != 0)
            raise ConfigError(
                f"{nesterov} needs {momentum} > 0 and {dampening} 0, got momentum {self.momentum} and dampening "
                f"{self.dampening}: set {' and '.join(fixes)}, or drop {nesterov}"
            )
        require(math.isfinite(self.weight_decay) and self.weight_decay >= 0, "weight_decay", ">= 0")
        require(self.lr_step >= 0, "lr_step", "an integer >= 0 (0 keeps the rate constant)")
        require(0 < self.lr_gamma <= 1, "lr_gamma", "a number in (0, 1]")
        require(self.patience >= 0, "patience", "an integer >= 0 (0 turns early stopping off)")
        require(0 <= self.val_split < 1, "val_split", "a fraction in [0, 1), such as 0.1")
        for name, names in choices.items():
            require(getattr(self, name) in names, name, one_of[name])
        largest = float(np.finfo(self.dtype).max)
        require(self.lr <= largest, "lr", f"at most {largest:.4g}, the largest {self.dtype}")
        smallest = float(np.finfo(self.dtype).smallest_subnormal)
        require(np.dtype(self.dtype).type(self.lr) > 0, "lr", f"at least {smallest:.2g}, the smallest {self.dtype} "
                "above 0 (a smaller rate is 0 there and leaves the weights as they are)")  # fmt: skip
        require(self.weight_decay <= largest, "weight_decay", f"at most {largest:.4g}, the largest {self.dtype}")
        require(self.seed >= 0, "seed", "an integer >= 0")
        require(self.limit is None or self.limit >= 1, "limit", "an integer >= 1")
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


def option_name(name: str, flags: bool = True) -> str:
    """How an option is named to the user: ``--batch-size`` on the command line, ``batch_size`` as a parameter."""
    return "--" + name.replace("_", "-") if flags else name


#: By the type of an option's default: what its value must be (``limit``, None by default, is an integer).
_KINDS = {
    int: (numbers.Integral, "an integer"),
    type(None): (numbers.Integral, "an integer"),
    float: (numbers.Real, "a number"),
    bool: (bool, "true or false"),
    str: (str, "a string"),
}
