"""What a run saves, and how it is read back: ``model.npz``, ``checkpoint.npz``, ``history.csv``.

``model.npz`` is framework-neutral and read by both packages: ``weight`` (K, D), ``bias`` (K,), the scaling
``mean`` and ``std`` applied after ``/ 255`` (0 and 1 without normalisation), and ``config`` (a JSON string: the
run's options as in its ``config.json``, with :data:`DATA_DIR` when the run was given one, and
:data:`COMMAND_OPTIONS` for a command with options of its own).
Every file is written atomically, and every file read back is checked: a malformed, hand-edited or diverged
file is one :class:`UserError` line, before anything uses it.
"""

from __future__ import annotations

import csv
import io
import json
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .config import TrainConfig
from .errors import UserError
from .files import atomic_open, parse_json, write_text
from .optim import momentum_buffer_key
from .trainer import HISTORY_COLUMNS, TrainState

#: The key of ``config.json`` and ``model.npz``'s config that records a run's ``--data-dir`` (absolute), when given.
DATA_DIR = "data_dir"
#: The key that records the options of the training command's own that shape a run (``torch_ref.train``'s
#: ``--device``, ``--loader``, ``--tf32``, ...), which ``--resume`` restores: an object of flag names to values.
COMMAND_OPTIONS = "command_options"


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


def save_model(path: Path, weight, bias, mean: float, std: float, options: dict) -> None:
    """Write ``model.npz`` (see the module docstring); ``options``: the run's, as in its ``config.json``."""
    save_npz(
        path,
        {"weight": weight, "bias": bias, "mean": np.float64(mean), "std": np.float64(std),
         "config": np.array(json.dumps(options))},
    )  # fmt: skip


def load_model(path: str | Path) -> SavedModel:
    """Read and check a ``model.npz`` (or the one in a run folder); one-line :class:`UserError` otherwise.

    The weight must be (K, D) and the bias (K,), both finite floats; ``mean`` and ``std`` finite numbers with
    ``std > 0``; ``config``, when present, a JSON object.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "model.npz"
    if not path.is_file():
        raise UserError(f"no model at {path}: expected a run folder holding model.npz, or a model.npz file")
    arrays = _read_npz(path, "a model.npz")
    missing = [k for k in ("weight", "bias", "mean", "std") if k not in arrays]
    if missing:
        if any(name.endswith("data.pkl") for name in arrays):  # the zip archive torch.save writes (model.pt)
            raise UserError(f"{path}: a PyTorch file (torch.save), not a model.npz: give the run folder, or the "
                            "model.npz beside it")  # fmt: skip
        raise UserError(f"{path}: missing {', '.join(missing)}; expected a model.npz of either package (weight, "
                        "bias, mean and std)")  # fmt: skip
    weight, bias = (_finite_floats(path, name, arrays[name]) for name in ("weight", "bias"))
    if weight.ndim != 2 or bias.shape != (weight.shape[0],):
        raise UserError(f"{path}: weight {weight.shape} and bias {bias.shape}, expected (K, D) and (K,)")
    mean, std = (_finite_floats(path, name, arrays[name], scalar=True) for name in ("mean", "std"))
    if std <= 0:
        raise UserError(f"{path}: std is {std}, expected a number > 0 (the scaling divides by it)")
    with np.errstate(all="ignore"):
        ends = ((np.array([0.0, 1.0]) - mean) / std).astype(np.float32)  # pixels 0 and 255, scaled
    if not np.isfinite(ends).all():
        raise UserError(f"{path}: mean {mean:g} and std {std:g} scale the pixels beyond float32's range; expected "
                        "the training set's own, as a run saves them")  # fmt: skip
    config = {}
    if "config" in arrays:
        try:
            config = parse_json(str(arrays["config"]))
        except ValueError:
            raise UserError(f"{path}: config is not valid JSON; expected the run's options") from None
        if not isinstance(config, dict):
            raise UserError(f"{path}: config is not a JSON object; expected the run's options")
    return SavedModel(weight, bias, mean, std, config)


def save_checkpoint(path: Path, backend_state: dict[str, np.ndarray], state: TrainState,
                    options: dict | None = None) -> None:  # fmt: skip
    """Everything ``--resume`` needs: the backend's arrays, the best weights, and the loop's state; ``options``:
    the run's (``TrainConfig.to_dict()``), which the resumed run must still have."""
    arrays = {f"backend/{k}": v for k, v in backend_state.items()}
    if state.best_weight is not None:
        arrays.update({"best/weight": state.best_weight, "best/bias": state.best_bias})
    if options is not None:
        arrays["options"] = np.array(json.dumps(options))
    save_npz(path, {**arrays, "state": np.array(state.to_json())})


def load_checkpoint(path: Path, options: dict | None = None) -> tuple[dict[str, np.ndarray], TrainState]:
    """Inverse of :func:`save_checkpoint`, checked: every array finite floats, the loop's state a run's (each
    field of its type and range, and consistent with the others: :meth:`TrainState.check`), and the options it
    was saved with those given (``config.json``'s now: an edit there would change the run half-way, a batch size
    its position in the epoch). Given the options, a run with momentum that has taken a step and has steps left
    must have its momentum buffers: without them it would go on, but not as it would have. (Whether the shapes
    fit the run is for the caller, who knows the data.)"""
    arrays = _read_npz(path, "a checkpoint")
    if "state" not in arrays or "backend/weight" not in arrays or "backend/bias" not in arrays:
        raise UserError(f"{path}: not a checkpoint (no state, weight or bias); start a new run instead")
    for name, array in arrays.items():
        if name not in ("state", "options"):
            _finite_floats(path, name, array)
    if options is not None and "options" in arrays:
        try:
            saved = parse_json(str(arrays["options"]))
        except ValueError:
            raise UserError(f"{path}: its options are not valid JSON; start a new run instead") from None
        changed = [key for key in options if not isinstance(saved, dict) or saved.get(key) != options[key]]
        if changed:
            key = changed[0]
            was = saved.get(key) if isinstance(saved, dict) else None
            raise UserError(f"{path}: the run was saved with {key} {was!r}, but its config.json now says "
                            f"{options[key]!r}: put it back, or start a new run")  # fmt: skip
    config = None if options is None else TrainConfig.from_dict(options)
    try:
        fields = parse_json(str(arrays["state"]))
        state = TrainState(**fields, best_weight=arrays.get("best/weight"), best_bias=arrays.get("best/bias"))
        state.check(config)
    except (ValueError, TypeError) as exc:
        raise UserError(f"{path}: its state is not a run's ({exc}); start a new run instead") from None
    buffers = [f"backend/{momentum_buffer_key(i)}" for i in range(2)]  # weight's, bias's
    missing = [name for name in buffers if name not in arrays]
    if 0 < len(missing) < len(buffers):
        there = next(name for name in buffers if name in arrays)
        raise UserError(f"{path}: holds {there} but no {missing[0]}; expected the momentum buffers of both the "
                        "weight and the bias, or neither: start a new run instead")  # fmt: skip
    steps_taken = state.epoch > 0 or state.batch > 0
    steps_left = config is not None and state.epoch < config.epochs and not state.stopped_early
    if missing and config is not None and config.momentum > 0 and steps_taken and steps_left:  # a run past its
        # last epoch (rescued as it wrote its results) holds its kept weights alone: its buffers are not needed
        raise UserError(f"{path}: no momentum buffers ({', '.join(missing)}), but the run trains with momentum "
                        f"{config.momentum} and has taken steps: resumed without them, it would not go on as it "
                        "would have; start a new run instead")  # fmt: skip
    backend_state = {k.split("/", 1)[1]: v for k, v in arrays.items() if k.startswith("backend/")}
    return backend_state, state


def write_history(path: Path, history: list[dict]) -> None:
    """``history.csv``: one row per epoch, columns :data:`HISTORY_COLUMNS`, empty where there is no value."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=HISTORY_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(_csv_row(row) for row in history)
    write_text(path, buf.getvalue())


def append_history(path: Path, row: dict) -> None:
    """Add one epoch's row to ``history.csv`` (which :func:`write_history` began): constant work per epoch, so a
    long run does not slow down. A crash mid-line leaves a short last line; ``--resume`` rewrites the file."""
    buf = io.StringIO()
    csv.DictWriter(buf, fieldnames=HISTORY_COLUMNS, lineterminator="\n").writerow(_csv_row(row))
    with open(path, "a") as f:
        f.write(buf.getvalue())
        f.flush()
        os.fsync(f.fileno())


def _csv_row(row: dict) -> dict:
    return {k: "" if v is None else v for k, v in row.items()}


def _read_npz(path: Path, what: str) -> dict[str, np.ndarray]:
    try:
        with open(path, "rb") as f:  # np.load takes anything else for a pickle, and says to allow pickles
            if f.read(2) != b"PK":
                raise UserError(f"{path}: not a readable .npz file (not a zip archive); expected {what}")
        with np.load(path, allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise UserError(f"{path}: not a readable .npz file ({exc}); expected {what}") from None


def _finite_floats(path: Path, name: str, array: np.ndarray, scalar: bool = False):
    """``array`` if it holds finite real floats (a float if ``scalar``); a one-line :class:`UserError` if not."""
    if array.dtype.kind != "f":
        raise UserError(f"{path}: {name} has dtype {array.dtype}, expected floating-point numbers")
    if scalar and array.shape != ():
        raise UserError(f"{path}: {name} has shape {array.shape}, expected a single number")
    if not np.isfinite(array).all():
        raise UserError(
            f"{path}: {name} holds NaN or infinite values, expected finite numbers (did the run diverge, or was "
            "the file edited?)"
        )
    return float(array) if scalar else array
