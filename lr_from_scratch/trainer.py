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

    def check(self, config: TrainConfig | None = None) -> None:
        """Raise ``ValueError`` naming the first field of the wrong type, out of its range, or at odds with the
        others (say, in a hand-edited checkpoint), so that nothing downstream meets it: a resumed run would
        otherwise train on and fail at its end. ``config``: the run's, when known, for what depends on it (whether
        there is a validation split, early stopping, the batch size). Where the run's place in an epoch must fit
        the data (how many batches it has), the caller checks, once it knows the data."""
        for name in ("epoch", "batch", "correct", "best_epoch", "bad_epochs"):
            value = getattr(self, name)
            if not _is_integer(value) or value < 0:
                raise ValueError(f"{name} is {value!r}, expected an integer >= 0")
        for name in ("loss_sum", "epoch_seconds", "train_seconds", "best_val_loss"):
            value = getattr(self, name)
            finite = name != "best_val_loss"  # infinite before the first epoch ends, and in runs without validation
            if not _is_number(value) or not value >= 0 or (finite and not math.isfinite(value)):
                raise ValueError(f"{name} is {value!r}, expected a {'finite ' * finite}number >= 0")
        if not isinstance(self.stopped_early, bool):
            raise ValueError(f"stopped_early is {self.stopped_early!r}, expected true or false")
        if not isinstance(self.history, list) or not all(
            isinstance(row, dict) and set(row) == set(HISTORY_COLUMNS) for row in self.history
        ):
            raise ValueError(f"history is not a list of rows with the columns {', '.join(HISTORY_COLUMNS)}")
        done = self.epoch
        if len(self.history) != done:
            raise ValueError(f"{len(self.history)} history rows for epoch {done}, expected one per epoch done")
        has_val = config.val_split > 0 if config else bool(self.history) and self.history[0]["val_loss"] is not None
        for number, row in enumerate(self.history, 1):
            _check_row(number, row, has_val)
        self._check_kept(has_val)
        if self.bad_epochs != done - self.best_epoch:
            raise ValueError(f"bad_epochs is {self.bad_epochs}, expected {done - self.best_epoch}: the epochs since "
                             f"the kept epoch {self.best_epoch}")  # fmt: skip
        stops = has_val and self.bad_epochs > 0 and (config is None or 0 < config.patience <= self.bad_epochs)
        if self.stopped_early != stops and (self.stopped_early or config is not None):
            why = f"{self.bad_epochs} epochs without a better validation loss" if has_val else "no validation split"
            patience = f", patience {config.patience}" if config is not None and has_val else ""
            raise ValueError(f"stopped_early is {json.dumps(self.stopped_early)}, expected {json.dumps(stops)} "
                             f"({why}{patience})")  # fmt: skip
        if self.batch == 0 and (self.loss_sum, self.correct, self.epoch_seconds) != (0, 0, 0):
            raise ValueError(f"loss_sum {self.loss_sum!r}, correct {self.correct} and epoch_seconds "
                             f"{self.epoch_seconds!r} at batch 0, expected 0 before an epoch's first step")  # fmt: skip
        if self.batch and self.stopped_early:
            raise ValueError(f"batch is {self.batch} in a run that stopped early, expected 0")
        if config is not None and self.correct > self.batch * config.batch_size:
            raise ValueError(f"correct is {self.correct} after {self.batch} batches of {config.batch_size}, expected "
                             f"at most {self.batch * config.batch_size}")  # fmt: skip
        total = 0.0
        for row in self.history:  # as the loop adds them up
            total += row["seconds"]
        if not math.isclose(self.train_seconds, total, rel_tol=1e-9, abs_tol=1e-9):
            raise ValueError(f"train_seconds is {self.train_seconds!r}, expected {total!r}: the sum of the history's "
                             "seconds")  # fmt: skip

    def _check_kept(self, has_val: bool) -> None:
        """The kept epoch and its weights: the first epoch of lowest validation loss (without validation, the
        last); none before the first epoch ends."""
        done, best = self.epoch, self.best_epoch
        if best > done or (best == 0) != (done == 0):
            expected = "0: no epoch has ended" if done == 0 else f"an epoch done, 1 to {done}"
            raise ValueError(f"best_epoch is {best}, expected {expected}")
        if (self.best_weight is None, self.best_bias is None) != (best == 0, best == 0):
            kept = "both there" if best else "absent"
            raise ValueError(f"best_epoch is {best}, so the kept weights best/weight and best/bias should be {kept}")
        if has_val and done:
            losses = [row["val_loss"] for row in self.history]
            lowest = losses.index(min(losses)) + 1
            if best != lowest:
                raise ValueError(f"best_epoch is {best}, expected {lowest}: the first epoch of lowest validation loss")
            if self.best_val_loss != losses[lowest - 1]:
                raise ValueError(f"best_val_loss is {self.best_val_loss!r}, expected {losses[lowest - 1]!r}: the "
                                 f"validation loss of the kept epoch {best}")  # fmt: skip
        else:
            if best != done:
                raise ValueError(f"best_epoch is {best}, expected {done}: without validation the last epoch is kept")
            if self.best_val_loss != math.inf:
                raise ValueError(f"best_val_loss is {self.best_val_loss!r}, expected Infinity: no validation loss "
                                 f"{'in this run' if done else 'yet'}")  # fmt: skip


def _is_integer(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


#: What each column of a history row but ``epoch`` holds: (lowest, highest, what is expected), a finite number but
#: for the speed (infinite for an epoch timed at 0 s); the validation columns are None (empty in ``history.csv``) in a
#: run without validation, and only then.
_ROW_RANGES = {
    "lr": (0, math.inf, "a finite number >= 0"),
    "train_loss": (0, math.inf, "a finite number >= 0"),
    "train_accuracy": (0, 1, "a number in [0, 1]"),
    "val_loss": (0, math.inf, "a finite number >= 0"),
    "val_accuracy": (0, 1, "a number in [0, 1]"),
    "seconds": (0, math.inf, "a finite number >= 0"),
    "samples_per_second": (0, math.inf, "a number > 0"),
}


def _check_row(number: int, row: dict, has_val: bool) -> None:
    """Raise ``ValueError`` if history row ``number`` (1-based) is not one the loop writes."""
    if not _is_integer(row["epoch"]) or row["epoch"] != number:
        raise ValueError(f"history row {number}: epoch is {row['epoch']!r}, expected {number}")
    for column, (low, high, expected) in _ROW_RANGES.items():
        value = row[column]
        if column in ("val_loss", "val_accuracy") and not has_val:
            if value is not None:
                raise ValueError(f"history row {number}: {column} is {value!r}, expected null: the run has no "
                                 "validation split")  # fmt: skip
            continue
        speed = column == "samples_per_second"
        if not _is_number(value) or not low <= value <= high or not (value > 0 if speed else math.isfinite(value)):
            raise ValueError(f"history row {number}: {column} is {value!r}, expected {expected}")


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
