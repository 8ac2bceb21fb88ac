"""The run folder: ``config.json``, ``history.csv``, ``metrics.json``, ``model.npz``, ``checkpoint.npz``.

``model.npz`` is framework-neutral and read by both packages: ``weight`` (K, D), ``bias`` (K,), the scaling
``mean`` and ``std`` applied after ``/ 255`` (0 and 1 without normalisation), and ``config`` (a JSON string).
Every file is written atomically.
"""

from __future__ import annotations

import csv
import io
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .config import TrainConfig
from .errors import UserError
from .files import atomic_open, write_text
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
