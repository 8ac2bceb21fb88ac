"""The run folder, and every way a run can end.

:class:`RunFolder` owns every file action of a training run. Its files: ``config.json`` (the options),
``status.json`` (how the run stands, and what to do next), ``history.csv`` (a row per epoch),
``checkpoint.npz`` (all that ``--resume`` needs, rewritten at every epoch's end and on an interrupt),
``model.npz``, ``metrics.json`` and ``curves.png`` (the results). A run holds a lock on its folder while it
lives, so two runs never share one.

Every ending leaves the folder saying what it holds (``status.json``) and what can be done next:

=============== ================================================= =========================================
status          the folder holds                                  next
=============== ================================================= =========================================
``finished``    the results                                       evaluate it; nothing to resume
``interrupted`` the checkpoint (Ctrl-C, SIGTERM, a failed write)  ``--resume`` continues exactly
``running``     when no run holds the lock: it was killed (or     ``--resume`` from its last checkpoint
                the machine stopped) after its last checkpoint
``diverged``    ``model.npz`` with the kept epoch, if any         a new run with a lower ``--lr``
``failed``      its last checkpoint, if an epoch had ended        ``--resume`` from it, once the cause is
                (memory ran out, or an error no one foresaw)      gone
=============== ================================================= =========================================
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .cli import writable_folder
from .config import TrainConfig
from .data import DATASETS
from .errors import ConfigError, UserError
from .files import parse_json, write_json
from .plots import plot_history
from .saved import (
    COMMAND_OPTIONS,
    DATA_DIR,
    append_history,
    load_checkpoint,
    save_checkpoint,
    save_model,
    write_history,
)
from .trainer import TrainState

CONFIG, STATUS, HISTORY, METRICS, MODEL, CHECKPOINT, CURVES = (
    "config.json", "status.json", "history.csv", "metrics.json", "model.npz", "checkpoint.npz", "curves.png",
)  # fmt: skip
LOCK = ".lock"  # held (flock) by the run that owns the folder; gone once it ends
PROBE_S = 0.2  # a lock held longer than this is a run's, not another command's instant look (held_by_a_run)


class RunFolder:
    """The folder of one training run, held for the run's lifetime (use it as a context manager).

    :meth:`create` claims a folder for a new run, :meth:`open_to_resume` an interrupted one. Then :meth:`start`
    (``config.json``) or :meth:`resume`, :meth:`end_epoch` (``history.csv``, ``checkpoint.npz``) and one ending:
    :meth:`interrupted`, :meth:`diverged` or :meth:`finished`. Leaving the ``with`` block releases the folder;
    a folder this run created and never started is removed.
    """

    def __init__(self, path: Path, config: TrainConfig, created: bool, data_dir: Path | None = None,
                 command_options: dict | None = None):  # fmt: skip
        self.path, self.config, self.created = path, config, created
        self.data_dir = data_dir  #: the --data-dir the run was given (absolute), recorded for --resume and evaluate
        #: the command's own options that shape the run (torch_ref's --device, --loader, ...), for --resume
        self.command_options = command_options or {}
        self.scaling: tuple[float, float] | None = None  #: (mean, std) of the inputs, once the data is loaded
        self.started = False  #: whether :meth:`start` or :meth:`resume` has written the run's status
        self._lock = _lock(path)

    # -- claiming a folder -----------------------------------------------------------------------------

    @classmethod
    def create(cls, path: Path | None, config: TrainConfig, data_dir: Path | None = None,
               command_options: dict | None = None) -> RunFolder:  # fmt: skip
        """A folder for a new run: ``path``, or a new ``runs/<timestamp>`` (never one another run took); ``data_dir``
        is the run's ``--data-dir``, if given; ``command_options`` the command's own options that shape it."""
        data_dir = data_dir and data_dir.absolute()  # a resume may start elsewhere
        if path is None:
            return cls(_new_run_dir(), config, created=True, data_dir=data_dir, command_options=command_options)
        try:
            existed = path.exists()
        except OSError:  # a name too long, say: writable_folder says so
            existed = False
        writable_folder(path, "--out")
        if (path / CONFIG).exists() or (path / STATUS).exists():
            raise ConfigError(f"--out {path} {_describe(path)}")
        others = sorted(p.name for p in path.iterdir() if p.name != LOCK)  # a run's files would overwrite theirs
        if others:
            listed = ", ".join(others[:3]) + (f" and {len(others) - 3} more" if len(others) > 3 else "")
            raise ConfigError(f"--out {path} holds files of its own ({listed}): a run needs a new or empty "
                              "folder; choose another")  # fmt: skip
        return cls(path, config, created=not existed, data_dir=data_dir, command_options=command_options)

    @classmethod
    def open_to_resume(cls, path: Path) -> tuple[RunFolder, dict[str, np.ndarray], TrainState]:
        """The unfinished run in ``path``, its backend's arrays and the loop's state, from its checkpoint."""
        if path.exists() and not path.is_dir():
            raise ConfigError(f"--resume {path} is a file: expected the folder of an unfinished run")
        if not (path / CONFIG).is_file():
            raise ConfigError(f"--resume {path}: no {CONFIG} there; expected the folder of an unfinished run")
        status = _read_status(path)
        if status.get("status") in ("finished", "diverged") or not (path / CHECKPOINT).is_file():
            raise ConfigError(f"--resume {path}: nothing to resume: it {_describe(path)}")
        try:
            options = parse_json((path / CONFIG).read_text())
            if not isinstance(options, dict):
                raise ValueError(f"expected a JSON object of the run's options, got a {type(options).__name__}")
            data_dir = options.pop(DATA_DIR, None)
            if not isinstance(data_dir, str | None):
                raise ValueError(f"{DATA_DIR} must be a folder's path, got {data_dir!r}")
            command_options = options.pop(COMMAND_OPTIONS, {})
            if not isinstance(command_options, dict):
                raise ValueError(
                    f"{COMMAND_OPTIONS} must be an object of the command's options, got {command_options!r}"
                )
            config = TrainConfig.from_dict(options).validate()
        except (ValueError, TypeError) as exc:
            raise UserError(f"{path / CONFIG}: not a valid run config ({exc}): put back the one the run wrote, or "
                            "start a new run in another folder") from None  # fmt: skip
        folder = cls(writable_folder(path, "--resume"), config, created=False, data_dir=data_dir and Path(data_dir),
                     command_options=command_options)  # fmt: skip
        try:
            backend_state, state = load_checkpoint(path / CHECKPOINT, config.to_dict())
            try:
                write_history(path / HISTORY, state.history)  # drops any row written after the checkpoint
            except OSError as exc:  # before the run starts: the folder stays as it was
                is_dir = (path / HISTORY).is_dir()
                what = "is a folder" if is_dir else f"cannot be written ({exc.strerror or exc})"
                fix = "move it out of the way" if is_dir else "make it writable"
                raise UserError(f"{path / HISTORY} {what}, expected the run's history file: {fix}, then --resume "
                                f"{path} again (the checkpoint holds the history, and the resumed run writes the "
                                "file anew)") from None  # fmt: skip
        except BaseException:
            folder.close()
            raise
        return folder, backend_state, state

    # -- the run's life --------------------------------------------------------------------------------

    def options(self) -> dict:
        """What ``config.json`` and ``model.npz`` record: the run's options, its ``--data-dir`` if given, and the
        command's own options if it has any."""
        return {**self.config.to_dict(), **({DATA_DIR: str(self.data_dir)} if self.data_dir else {}),
                **({COMMAND_OPTIONS: self.command_options} if self.command_options else {})}  # fmt: skip

    def start(self) -> None:
        write_json(self.path / CONFIG, self.options())
        write_history(self.path / HISTORY, [])
        self._running(0)
        self.started = True

    def resume(self, state: TrainState) -> None:
        self._running(state.epoch, f"again from epoch {state.epoch + 1}")
        self.started = True

    def end_epoch(self, state: TrainState, backend_state: dict[str, np.ndarray]) -> None:
        append_history(self.path / HISTORY, state.history[-1])
        save_checkpoint(self.path / CHECKPOINT, backend_state, state, self.config.to_dict())
        self._running(state.epoch)

    def interrupted(self, backend_state: dict[str, np.ndarray], state: TrainState, why: str) -> None:
        save_checkpoint(self.path / CHECKPOINT, backend_state, state, self.config.to_dict())
        self._status("interrupted", state.epoch, f"{why} {self._when(state, state.batch)}")

    def failed(self, state: TrainState, error: str, fix: str) -> str | None:
        """The run stopped on ``error``, which no other ending covers: say so in ``status.json`` and keep the last
        checkpoint (the state in memory may be half-updated). Returns the line that says so and what to do
        (``fix``, then resume); None, writing nothing, if the run had not started."""
        if not self.started:
            return None
        what = f"{error} {self._when(state)}"
        with contextlib.suppress(OSError):  # the error itself is the news: a failing write must not hide it
            self._status("failed", state.epoch, what)
        if (self.path / CHECKPOINT).is_file():
            return f"{what}; its last checkpoint is kept: {fix}, then continue with --resume {self.path}"
        return f"{what}; no epoch had ended, so there is nothing to resume: {fix}, then start a new run"

    def _when(self, state: TrainState, batches: int | None = None) -> str:
        """Where in the run it stopped: ``in epoch N`` (``after B batches`` when given), or ``after its last
        epoch`` once training was over (only its results were still to write)."""
        if state.epoch >= self.config.epochs or state.stopped_early:
            return "after its last epoch"
        return f"in epoch {state.epoch + 1}" + ("" if batches is None else f" after {batches} batches")

    def diverged(self, state: TrainState, message: str) -> None:
        if state.best_weight is not None:
            self._save_model(state)
        (self.path / CHECKPOINT).unlink(missing_ok=True)  # resuming would only diverge again
        self._status("diverged", state.epoch, message)

    def finished(self, state: TrainState, metrics: dict, save_extra: Callable[[Path], list[str]]) -> list[str]:
        """Write the finished run's files; returns their names, in the order a listing should show them."""
        self._save_model(state)
        extra = save_extra(self.path)
        title = f"softmax regression on {DATASETS[self.config.dataset].title}"
        plot_history(state.history, self.path / CURVES, title=title, kept_epoch=state.best_epoch)
        write_json(self.path / METRICS, metrics)
        self._status("finished", state.epoch, f"test accuracy {metrics['test_accuracy']:.2%}")
        (self.path / CHECKPOINT).unlink(missing_ok=True)
        return [CONFIG, STATUS, HISTORY, METRICS, MODEL, *extra, CURVES]

    def rescue(self, state: TrainState, end: Callable[[RunFolder], None]) -> Path | None:
        """After a write into this folder failed: the run, its ending written by ``end`` (say,
        ``lambda folder: folder.interrupted(...)``, which ``--resume`` can finish), in a new run folder in the
        temporary folder, under a name no other folder has (so a rescue never touches an earlier one); None when
        that fails too."""
        try:
            target = Path(tempfile.mkdtemp(prefix=f"lr-from-scratch-rescued-{self.path.name}-"))
        except OSError:
            return None
        try:
            with RunFolder(target, self.config, created=True, data_dir=self.data_dir,
                           command_options=self.command_options) as rescued:  # fmt: skip
                rescued.scaling = self.scaling
                rescued.start()
                write_history(target / HISTORY, state.history)
                end(rescued)
        except OSError:
            shutil.rmtree(target, ignore_errors=True)
            return None
        return target

    def close(self) -> None:
        """Release the folder; remove it if this run created it and never started."""
        with contextlib.suppress(OSError):
            (self.path / LOCK).unlink()  # while still held, so that no one takes a lock on a file about to go
        os.close(self._lock)
        with contextlib.suppress(OSError):
            if self.created and not (self.path / CONFIG).exists():
                self.path.rmdir()

    def __enter__(self) -> RunFolder:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _status(self, status: str, epochs_done: int, detail: str) -> None:
        write_json(self.path / STATUS, {"status": status, "epochs_done": epochs_done, "detail": detail})

    def _running(self, epochs_done: int, how: str = "") -> None:
        """``running``, by this process, ``epochs_done`` epochs checkpointed (kept up to date at each epoch's end):
        if no such process is alive, it was killed then (``--out`` on the folder says so)."""
        self._status("running", epochs_done, f"training{f' {how}' if how else ''} (pid {os.getpid()})")

    def _save_model(self, state: TrainState) -> None:
        save_model(self.path / MODEL, state.best_weight, state.best_bias, *self.scaling, self.options())


def _read_status(path: Path) -> dict:
    try:
        status = parse_json((path / STATUS).read_text())
    except (OSError, ValueError):
        return {}
    return status if isinstance(status, dict) else {}


def _describe(path: Path) -> str:
    """What the run folder ``path`` holds and what the user can do, for a refusal (after "--out PATH")."""
    status = _read_status(path)
    state, detail = status.get("status"), status.get("detail", "")
    if held_by_a_run(path):
        return f"is in use by a run in progress ({detail}): choose another folder"
    if state == "finished" or (path / METRICS).exists():
        return f"holds a finished run ({detail or 'see metrics.json'}): choose another folder"
    if state == "diverged":
        kept = "model.npz holds the weights it kept" if (path / MODEL).exists() else "no epoch finished"
        return f"holds a run that diverged ({detail}; {kept}): start a new one in another folder, with a lower --lr"
    how = detail or state
    if state == "running":  # and no one holds the lock: the process died, or its writes failed
        how = f"it stopped after epoch {_epochs_in_history(path)} without finishing: killed, or a write failed"
    if (path / CHECKPOINT).is_file():
        how = how or "interrupted"
        return f"holds an unfinished run ({how}): continue it with --resume {path}, or choose another folder"
    done = status.get("epochs_done")
    if isinstance(done, int) and done > 0:  # epochs were checkpointed, and the checkpoint is gone
        return (
            f"holds an unfinished run ({how}) but no {CHECKPOINT} to continue from (put it back to resume): "
            "choose another folder"
        )
    if state is not None:  # a run's status, but no checkpoint: it ended before its first epoch did
        how = "failed" if state == "failed" else "stopped"
        if state == "running":  # and no one holds the lock
            detail = "killed, or a write failed"
        return f"holds a run that {how} before its first epoch ended ({detail or state}): choose another folder"
    return f"holds a {CONFIG} but no {STATUS} (a run stopped as it began, or not a run's): choose another folder"


def _epochs_in_history(path: Path) -> int:
    try:
        return max(0, len((path / HISTORY).read_text().splitlines()) - 1)
    except OSError:
        return 0


def _lock(path: Path) -> int:
    """Take the folder's lock (released when the process ends, however it ends); refuse a folder in use.

    A lock held for less than :data:`PROBE_S` is another command's look at the folder (:func:`held_by_a_run`),
    not a run: wait it out. A lock taken on a file that its holder removed meanwhile (see
    :meth:`RunFolder.close`) guards nothing: then try again on the new file."""
    while True:
        try:
            fd = os.open(path / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        except FileNotFoundError:  # a run that was refused removed the folder it had just made
            raise ConfigError(f"{path} was removed while this run claimed it: run the command again") from None
        if not _flock_within(fd, fcntl.LOCK_EX, PROBE_S):
            os.close(fd)
            detail = _read_status(path).get("detail")  # "training (pid N)", once the run has started
            raise ConfigError(f"{path} is in use by a run in progress{f' ({detail})' if detail else ''}: wait for "
                              "it to end or stop it, or choose another folder") from None  # fmt: skip
        with contextlib.suppress(FileNotFoundError):
            if os.stat(path / LOCK).st_ino == os.fstat(fd).st_ino:
                return fd
        os.close(fd)


def _flock_within(fd: int, kind: int, seconds: float) -> bool:
    """Take ``flock(fd, kind)`` if it comes free within ``seconds``; False if it stays held."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            fcntl.flock(fd, kind | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(seconds / 20)


def held_by_a_run(path: Path) -> bool:
    """Whether a run holds the folder's lock. The look takes the lock, shared, for an instant, which is why
    :func:`_lock` waits up to :data:`PROBE_S` before it calls a folder in use."""
    try:
        fd = os.open(path / LOCK, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        return not _flock_within(fd, fcntl.LOCK_SH, 0)
    finally:
        os.close(fd)


def _new_run_dir() -> Path:
    """A new folder ``runs/<timestamp>`` (``-2``, ``-3``, ... when taken), made atomically."""
    runs = writable_folder(Path("runs"), "the default --out")
    stamp, n = time.strftime("%Y%m%d-%H%M%S"), 1
    while True:
        run_dir = runs / (stamp if n == 1 else f"{stamp}-{n}")
        try:
            run_dir.mkdir()
            return run_dir
        except FileExistsError:
            n += 1
