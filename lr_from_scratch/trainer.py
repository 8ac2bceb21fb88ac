"""The training loop shared by every backend: epochs, learning-rate schedule, early stopping, checkpoints.

The loop's whole state is a :class:`TrainState` plus the backend's arrays, so a run stopped between two
calls of ``run_steps`` (Ctrl-C) and resumed from a checkpoint ends with exactly the weights of a run that
never stopped: each epoch's order is replayed from ``(seed, epoch)`` and the position inside it is saved.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from tqdm.auto import tqdm

from .backends import Backend
from .cli import bars_shown
from .config import TrainConfig
from .data.pipeline import batch_slices, epoch_order
from .errors import TrainingDiverged
from .optim import step_lr

HISTORY_COLUMNS = (
    "epoch", "lr", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "seconds", "samples_per_second",
)  # fmt: skip


class TrainingInterrupted(Exception):
    """Raised between two steps when the caller asked to stop (Ctrl-C); the state is consistent."""


@dataclass
class TrainState:
    """Where a run stands. Everything here is JSON; the arrays travel beside it in the checkpoint."""

    epoch: int = 0  # the epoch in progress (0-based)
    batch: int = 0  # the next batch of that epoch
    loss_sum: float = 0.0  # running train loss x samples, this epoch
    correct: int = 0  # running correct predictions, this epoch
    epoch_seconds: float = 0.0  # training seconds spent on this epoch so far
    train_seconds: float = 0.0  # training seconds, all epochs (evaluation excluded)
    best_val_loss: float = math.inf
    best_epoch: int = 0  # 1-based epoch whose weights are kept; 0 before the first epoch ends
    bad_epochs: int = 0  # epochs since the validation loss last improved
    stopped_early: bool = False
    history: list[dict] = field(default_factory=list)
    best_weight: np.ndarray | None = field(default=None, repr=False)
    best_bias: np.ndarray | None = field(default=None, repr=False)

    def to_json(self) -> str:
        arrays = ("best_weight", "best_bias")
        return json.dumps({f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in arrays})

    def check(self) -> None:
        """Raise ``ValueError`` naming the first field of the wrong type or out of range (say, in a hand-edited
        checkpoint), so that nothing downstream meets it."""
        for name in ("epoch", "batch", "correct", "best_epoch", "bad_epochs"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{name} is {value!r}, expected an integer >= 0")
        for name in ("loss_sum", "epoch_seconds", "train_seconds", "best_val_loss"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or isinstance(value, bool) or not value >= 0:
                raise ValueError(f"{name} is {value!r}, expected a number >= 0")
        if not isinstance(self.stopped_early, bool):
            raise ValueError(f"stopped_early is {self.stopped_early!r}, expected true or false")
        if not isinstance(self.history, list) or not all(
            isinstance(row, dict) and set(row) == set(HISTORY_COLUMNS) for row in self.history
        ):
            raise ValueError(f"history is not a list of rows with the columns {', '.join(HISTORY_COLUMNS)}")
        if len(self.history) != self.epoch or (self.best_epoch > 0) != (self.best_weight is not None):
            raise ValueError(f"{len(self.history)} history rows for epoch {self.epoch}, best epoch {self.best_epoch}")


def fit(
    backend: Backend,
    config: TrainConfig,
    state: TrainState | None = None,
    progress: bool = True,
    log: Callable[[str], None] | None = print,
    should_stop: Callable[[], bool] = lambda: False,
    on_epoch_end: Callable[[TrainState], None] | None = None,
) -> TrainState:
    """Train until ``config.epochs`` or early stopping; return the final state (best weights in it).

    Raises :class:`TrainingDiverged` when the loss turns NaN or infinite (``state.best_*`` hold the last good
    weights) and :class:`TrainingInterrupted` when ``should_stop()`` turns true between two steps.
    """
    state = state or TrainState()
    batches = batch_slices(backend.n_train, config.batch_size)
    said_zero_lr = False
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # non-finite losses are caught below
        while state.epoch < config.epochs and not state.stopped_early:
            if should_stop():  # Ctrl-C in the previous epoch's final chunk stops here, once that epoch is saved
                raise TrainingInterrupted
            lr = epoch_lr(config, state.epoch)
            if log is not None and not said_zero_lr and np.dtype(config.dtype).type(lr) == 0:
                log(f"note: from epoch {state.epoch + 1} on, the learning rate {lr:.3g} is 0 in {config.dtype}: "
                    "the remaining steps leave the weights as they are")  # fmt: skip
                said_zero_lr = True
            train_epoch(backend, config, state, batches, progress, should_stop)
            line = end_epoch(backend, config, state)
            if on_epoch_end is not None:
                on_epoch_end(state)  # first, so that a printed epoch is a saved one
            if log is not None:
                log(line)
    return state


def train_epoch(
    backend: Backend,
    config: TrainConfig,
    state: TrainState,
    batches: list[slice],
    progress: bool = False,
    should_stop: Callable[[], bool] = lambda: False,
) -> None:
    """Run the rest of epoch ``state.epoch``, from batch ``state.batch`` on, ``backend.steps_per_call`` batches
    per call, at the schedule's rate and in the epoch's order; add the loss, correct count and seconds to
    ``state``. Raises as :func:`fit` does, but never stops after the last chunk: the epoch ends first."""
    lr = epoch_lr(config, state.epoch)
    order = epoch_order(backend.n_train, config.seed, state.epoch)
    desc = f"epoch {state.epoch + 1}/{config.epochs}"
    with tqdm(total=len(batches), initial=state.batch, desc=desc, leave=False, disable=not bars_shown(progress)) as bar:
        while state.batch < len(batches):
            chunk = batches[state.batch : state.batch + backend.steps_per_call]
            start = time.perf_counter()
            loss_sum, correct = backend.run_steps(order, chunk, lr)
            state.epoch_seconds += time.perf_counter() - start
            seen = chunk[-1].stop
            if not math.isfinite(loss_sum):
                raise _diverged(state, config, seen)
            state.batch += len(chunk)
            state.loss_sum += loss_sum
            state.correct += correct
            bar.update(len(chunk))
            bar.set_postfix(loss=f"{state.loss_sum / seen:.4f}", acc=f"{state.correct / seen:.2%}", refresh=False)
            if state.batch < len(batches) and should_stop():
                raise TrainingInterrupted


def evaluate_kept(backend: Backend, state: TrainState, split: str = "test") -> tuple[float, float]:
    """Put the weights ``state`` kept (its best epoch's) into ``backend``; return their (loss, accuracy) on
    ``split``."""
    backend.load_state({"weight": state.best_weight, "bias": state.best_bias})
    return backend.evaluate(split)


def epoch_lr(config: TrainConfig, epoch: int) -> float:
    """The learning rate of epoch ``epoch`` (0-based) under the step schedule of ``config``."""
    return step_lr(config.lr, epoch, config.lr_step, config.lr_gamma)


def end_epoch(backend, config, state) -> str:
    """Validate, keep the best weights, decide on early stopping, move ``state`` to the next epoch; returns the
    epoch's summary line."""
    n_train, has_val = backend.n_train, backend.has_val
    row = {
        "epoch": state.epoch + 1,
        "lr": epoch_lr(config, state.epoch),
        "train_loss": state.loss_sum / n_train,
        "train_accuracy": state.correct / n_train,
        "val_loss": None,
        "val_accuracy": None,
        "seconds": state.epoch_seconds,
        "samples_per_second": n_train / state.epoch_seconds if state.epoch_seconds > 0 else math.inf,
    }
    if has_val:
        row["val_loss"], row["val_accuracy"] = backend.evaluate("val")
        if not math.isfinite(row["val_loss"]):
            raise _diverged(state, config, n_train, what="validation loss")
    improved = not has_val or row["val_loss"] < state.best_val_loss
    if improved:
        state.best_val_loss = row["val_loss"] if has_val else math.inf
        state.best_epoch = state.epoch + 1
        state.best_weight, state.best_bias = backend.params()
        state.bad_epochs = 0
    else:
        state.bad_epochs += 1
        state.stopped_early = has_val and config.patience > 0 and state.bad_epochs >= config.patience
    state.history.append(row)
    state.train_seconds += state.epoch_seconds
    state.epoch, state.batch = state.epoch + 1, 0
    state.loss_sum, state.correct, state.epoch_seconds = 0.0, 0, 0.0
    return format_epoch(row, config.epochs) + ("  (early stop)" if state.stopped_early else "")


def format_epoch(row: dict, epochs: int) -> str:
    """One summary line for a history row."""
    val = ""
    if row["val_loss"] is not None:
        val = f"  val loss {row['val_loss']:.4f} acc {row['val_accuracy']:.2%}"
    return (
        f"epoch {row['epoch']:>{len(str(epochs))}}/{epochs}  train loss {row['train_loss']:.4f} "
        f"acc {row['train_accuracy']:.2%}{val}  lr {row['lr']:.3g}  {row['seconds']:.2f} s  "
        f"{row['samples_per_second']:,.0f} samples/s"
    )


def _diverged(state: TrainState, config: TrainConfig, seen: int, what: str = "training loss") -> TrainingDiverged:
    happened = (
        f"the {what} became NaN or infinite in epoch {state.epoch + 1} (after {seen} samples) at lr "
        f"{epoch_lr(config, state.epoch):g}"
    )
    kept = f"kept the weights of epoch {state.best_epoch}" if state.best_epoch else "no epoch finished, nothing kept"
    hint = "a lower --lr" if config.normalize else "a lower --lr or --normalize"
    return TrainingDiverged(f"{happened}; {kept}. Try {hint}", happened)
