"""The run folder: ``config.json``, ``history.csv``, ``metrics.json``, ``model.npz``, ``checkpoint.npz``.

:class:`RunFolder` owns every file action of a run, at each point a run can reach. ``model.npz`` is
framework-neutral and read by both packages: ``weight`` (K, D), ``bias`` (K,), the scaling ``mean`` and ``std``
applied after ``/ 255`` (0 and 1 without normalisation), and ``config`` (a JSON string). Every file is written
atomically.
"""

from __future__ import annotations

import csv
import io
import json
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .config import TrainConfig
from .data import scaling
from .errors import ConfigError, UserError
from .files import atomic_open, write_json, write_text
from .plots import plot_history
from .trainer import HISTORY_COLUMNS, TrainState

CONFIG, HISTORY, METRICS, MODEL, CHECKPOINT, CURVES = (
    "config.json", "history.csv", "metrics.json", "model.npz", "checkpoint.npz", "curves.png",
)  # fmt: skip


@dataclass
class SavedModel:
    """What ``model.npz`` holds."""

    weight: np.ndarray
    bias: np.ndarray
    mean: float
    std: float
    config: dict


def save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """``np.savez`` written atomically."""
    with atomic_open(path, "wb") as f:
        np.savez(f, **arrays)


def save_model(path: Path, weight, bias, mean: float, std: float, config: TrainConfig) -> None:
    """Write ``model.npz`` (see the module docstring)."""
    save_npz(
        path,
        {"weight": weight, "bias": bias, "mean": np.float64(mean), "std": np.float64(std),
         "config": np.array(json.dumps(config.to_dict()))},
    )  # fmt: skip


def load_model(path: str | Path) -> SavedModel:
    """Read and check a ``model.npz`` (or the one in a run folder); one-line :class:`UserError` otherwise."""
    path = Path(path)
    if path.is_dir():
        path = path / MODEL
    if not path.is_file():
        raise UserError(f"no model at {path}: expected a run folder holding {MODEL}, or a {MODEL} file")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise UserError(f"{path}: not a readable .npz file ({exc})") from None
    missing = [k for k in ("weight", "bias", "mean", "std") if k not in arrays]
    if missing:
        raise UserError(f"{path}: missing {', '.join(missing)}; expected weight, bias, mean, std")
    weight, bias = arrays["weight"], arrays["bias"]
    if weight.ndim != 2 or bias.shape != (weight.shape[0],):
        raise UserError(f"{path}: weight {weight.shape} and bias {bias.shape}, expected (K, D) and (K,)")
    config = json.loads(str(arrays["config"])) if "config" in arrays else {}
    return SavedModel(weight, bias, float(arrays["mean"]), float(arrays["std"]), config)


def write_history(path: Path, history: list[dict]) -> None:
    """``history.csv``: one row per epoch, columns :data:`HISTORY_COLUMNS`, empty where there is no value."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=HISTORY_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: "" if v is None else v for k, v in row.items()} for row in history)
    write_text(path, buf.getvalue())


def save_checkpoint(path: Path, backend_state: dict[str, np.ndarray], state: TrainState) -> None:
    """Everything ``--resume`` needs: the backend's arrays, the best weights, and the loop's state."""
    arrays = {f"backend/{k}": v for k, v in backend_state.items()}
    if state.best_weight is not None:
        arrays.update({"best/weight": state.best_weight, "best/bias": state.best_bias})
    save_npz(path, {**arrays, "state": np.array(state.to_json())})


def load_checkpoint(path: Path) -> tuple[dict[str, np.ndarray], TrainState]:
    """Inverse of :func:`save_checkpoint`."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
        backend_state = {k.split("/", 1)[1]: v for k, v in arrays.items() if k.startswith("backend/")}
        state = TrainState.from_json(str(arrays["state"]), arrays.get("best/weight"), arrays.get("best/bias"))
    except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile) as exc:
        raise UserError(f"{path}: not a readable checkpoint ({exc}); start a new run instead") from None
    return backend_state, state


class RunFolder:
    """The folder of one training run, and every file the run writes into it:

    - :meth:`create` refuses a folder that already holds a run; :meth:`start` writes ``config.json``;
    - :meth:`end_epoch` rewrites ``history.csv``;
    - :meth:`interrupted` saves ``checkpoint.npz``, all that ``--resume`` needs (:meth:`open_to_resume`);
    - :meth:`diverged` saves the last good epoch's weights as ``model.npz``, when one finished;
    - :meth:`finished` writes ``model.npz``, the caller's extra files, ``curves.png`` and ``metrics.json``, and
      removes the checkpoint.
    """

    def __init__(self, path: Path, config: TrainConfig):
        self.path, self.config = Path(path), config
        self.mean, self.std = scaling(config.normalize)

    @classmethod
    def create(cls, path: str | Path | None, config: TrainConfig) -> RunFolder:
        """The folder for a new run: ``path``, or ``runs/<timestamp>`` when None."""
        path = Path(path) if path else _new_run_dir()
        if (path / CONFIG).exists():
            raise ConfigError(f"--out {path} already holds a run: choose another folder, or --resume {path}")
        return cls(path, config)

    @classmethod
    def open_to_resume(cls, path: str | Path) -> tuple[RunFolder, dict[str, np.ndarray], TrainState]:
        """The interrupted run in ``path``, its backend's arrays and the loop's state, from the checkpoint."""
        path = Path(path)
        if not (path / CONFIG).is_file():
            raise ConfigError(f"--resume {path}: no {CONFIG} there; expected the folder of an interrupted run")
        if not (path / CHECKPOINT).is_file():
            done = (path / METRICS).is_file()
            why = "the run already finished" if done else f"no {CHECKPOINT} (the run was not interrupted with Ctrl-C)"
            raise ConfigError(f"--resume {path}: nothing to resume, {why}")
        try:
            config = TrainConfig.from_dict(json.loads((path / CONFIG).read_text())).validate()
        except (ValueError, TypeError) as exc:
            raise UserError(f"{path / CONFIG}: not a valid run config ({exc})") from None
        return cls(path, config), *load_checkpoint(path / CHECKPOINT)

    def start(self) -> None:
        write_json(self.path / CONFIG, self.config.to_dict())

    def end_epoch(self, state: TrainState) -> None:
        write_history(self.path / HISTORY, state.history)

    def interrupted(self, backend_state: dict[str, np.ndarray], state: TrainState) -> None:
        save_checkpoint(self.path / CHECKPOINT, backend_state, state)

    def diverged(self, state: TrainState) -> None:
        if state.best_weight is not None:
            self._save_model(state)

    def finished(self, state: TrainState, metrics: dict, save_extra: Callable[[Path], list[str]]) -> list[str]:
        """Write the finished run's files; returns their names, in the order a listing should show them."""
        self._save_model(state)
        extra = save_extra(self.path)
        plot_history(state.history, self.path / CURVES, title=f"softmax regression on MNIST ({self.path.name})")
        write_json(self.path / METRICS, metrics)
        (self.path / CHECKPOINT).unlink(missing_ok=True)
        return [CONFIG, HISTORY, METRICS, MODEL, *extra, CURVES]

    def _save_model(self, state: TrainState) -> None:
        save_model(self.path / MODEL, state.best_weight, state.best_bias, self.mean, self.std, self.config)


def _new_run_dir() -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    run_dir, n = Path("runs") / stamp, 1
    while run_dir.exists():
        n += 1
        run_dir = Path("runs") / f"{stamp}-{n}"
    return run_dir
