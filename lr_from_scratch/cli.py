"""What every command shares: one-line errors with the right exit code, clean interrupts, output that may go
nowhere, and results written all at once.

- A :class:`UserError` prints ``error: <message>`` and exits with its code (2 for command-line mistakes).
- Ctrl-C (SIGINT) and SIGTERM (``kill``, a scheduler's time limit, ``docker stop``) are handled alike: the
  command stops with one line saying what was saved, and exits with 128 + the signal's number (130, 143).
  Where stopping mid-way would lose work, :class:`StopOnInterrupt` turns them into a flag the work polls.
- Output to a closed pipe (``... | head -1``) is dropped, not fatal: the work does not depend on a reader.
- Progress bars are drawn only where someone watches (:func:`bars_shown`), never into a log file.
- :func:`staged_outputs` writes a command's files into a hidden folder, then moves them into place while
  signals wait: all of them appear, or none.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import io
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from .errors import ConfigError, UserError
from .files import expand_home

SIGNALS = (signal.SIGINT, signal.SIGTERM)
#: Signals the process was started with ignored (a background job of a script: SIGINT): they stay ignored.
INHERITED_IGNORED = frozenset(s for s in SIGNALS if signal.getsignal(s) is signal.SIG_IGN)


class Interrupted(BaseException):
    """A SIGINT or SIGTERM arrived; ``saved`` says what the command had written by then."""

    def __init__(self, signum: int, saved: str = "nothing was saved"):
        super().__init__(signum, saved)
        self.signum, self.saved = signum, saved

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class ArgumentParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose mistakes are one line (``error: ...``) and exit 2, like every other error."""

    def error(self, message: str):
        raise ConfigError(f"{message} (see {as_run_here(self.prog)} --help)")


def path_arg(text: str) -> Path:
    """A path option as the user meant it: ``~`` expanded even in ``--out=~/x``, where the shell leaves it. An
    empty one (``--out ""``, an unset shell variable) is refused: ``Path("")`` would quietly mean this folder."""
    if not text.strip():
        raise argparse.ArgumentTypeError("got an empty path; expected a file or folder name")
    try:
        return expand_home(text)
    except ConfigError as exc:  # argparse would print only "invalid path_arg value"
        raise argparse.ArgumentTypeError(str(exc)) from None


def bars_shown(asked: bool) -> bool:
    """Whether to draw progress bars: when ``asked`` (no ``--no-progress``) and someone watches, on a terminal or
    in a notebook (where tqdm draws a widget). Into a log file a bar writes a carriage-return line per update."""
    if not asked:
        return False
    if "ipykernel" in sys.modules:
        return True
    return sys.stderr is not None and sys.stderr.isatty()


def as_run_here(prog: str) -> str:
    """The command ``prog`` (``python -m ...``) with the Python that runs now, as the user can type it from here:
    ``python`` when that is the one on the PATH (an active environment), else its path, relative to this folder
    when inside it (``.venv/bin/python``, as the README's commands have it)."""
    executable = os.path.abspath(sys.executable)  # not resolved: a venv's python is a link to the system's
    on_path = shutil.which("python")
    if on_path and os.path.abspath(on_path) == executable:
        return prog
    here = os.path.relpath(executable)
    return prog.replace("python", executable if here.startswith("..") else here, 1)


def add_data_and_out(parser: argparse.ArgumentParser, default_out: str) -> None:
    """``--data-dir``, ``--out DIR`` (default ``default_out``) and ``--no-progress``, as every analysis command of
    MNIST takes them."""
    parser.add_argument("--data-dir", type=path_arg, help="folder with the MNIST IDX files (default: as for training)")
    where = f"where to write (default: {default_out})"
    parser.add_argument("--out", type=path_arg, default=Path(default_out), metavar="DIR", help=where)
    parser.add_argument("--no-progress", action="store_true", help="no progress bars (the download's)")


def run_cli(main: Callable[[list[str] | None], int], argv: list[str] | None = None) -> int:
    """Run ``main(argv)`` and return its exit status; errors and interrupts become one line on stderr.

    A signal the command was started with ignored (SIGINT, for a background job of a script) stays ignored. Once
    the status is known, SIGINT and SIGTERM are ignored, so an interrupt while the error is printed or the
    interpreter shuts down cannot turn a finished command into a killed one.
    """
    previous = {s: signal.getsignal(s) for s in SIGNALS}
    code = None
    try:
        _handle_signals(_raise_interrupted)
        _tolerate_closed_pipes()
        try:
            code, line = main(argv), None
        except UserError as exc:
            code, line = exc.exit_code, f"error: {exc}"
        except Interrupted as exc:
            code, line = exc.exit_code, f"interrupted: {exc.saved}"
        except KeyboardInterrupt:
            code, line = 128 + signal.SIGINT, "interrupted: nothing was saved"
        finally:
            _handle_signals(signal.SIG_IGN)
        if line is not None:
            print(line, file=sys.stderr)
    finally:
        _remove_empty_folders_made(keep=code == 0)
        if argv is not None:  # called from Python (the tests): give the caller its handlers back, however it ended
            for s in SIGNALS:
                signal.signal(s, previous[s])
    return code


#: The folders :func:`writable_folder` made in this command, deepest first.
_MADE: list[Path] = []


def _remove_empty_folders_made(keep: bool) -> None:
    """After a command that failed or was interrupted (not ``keep``): the folders it made and left empty are
    removed, so a refusal found after ``--out`` was made leaves nothing behind. Any file in one keeps it."""
    made = list(_MADE)
    _MADE.clear()
    if not keep:
        for folder in made:
            with contextlib.suppress(OSError):
                folder.rmdir()  # only if empty


def starting_command() -> None:
    """For ``python -m <package>.<command>``, called by the package before the command's module is imported
    (Python sets ``sys.argv[0]`` to ``"-m"`` while it looks for that module); nothing otherwise.

    - ``NUMBA_NUM_THREADS``, which Numba reads as it is imported, must be a positive integer: anything else
      is one line and exit 2 here, where Numba would end in a traceback (0) or a warning holding one (``abc``).
      More threads than cores is a note: they take turns at the barriers of every step, many times slower.
      The switches the docs and messages name, ``NUMBA_ENABLE_CUDASIM`` and ``NUMBA_DISABLE_JIT``, must be 0 or 1.
    - ``MPLBACKEND`` is set to ``agg``: the commands draw their figures into files, and a backend matplotlib
      does not know (or one that needs a display) would stop a run at its end, when it draws its curves.
    - Until :func:`run_cli` takes over, Ctrl-C or SIGTERM ends the command with one line, not with Python's
      traceback of whatever library was loading (NumPy, Numba and torch take a while): the package's own
      handler, which it installs before it imports this module (``lr_from_scratch/__init__.py``).
    """
    if sys.argv[:1] != ["-m"]:
        return
    threads = os.environ.get("NUMBA_NUM_THREADS")
    if threads is not None and not (threads.strip().isdecimal() and int(threads) > 0):
        print(f"error: NUMBA_NUM_THREADS is {threads!r}, expected a positive integer (the threads Numba may use); "
              "set one, or unset it to use every core", file=sys.stderr)  # fmt: skip
        sys.exit(2)
    for switch in ("NUMBA_ENABLE_CUDASIM", "NUMBA_DISABLE_JIT"):
        if os.environ.get(switch, "0").strip() not in ("0", "1", ""):
            print(f"error: {switch} is {os.environ[switch]!r}, expected 1 (on) or 0 (off); set one, or unset it",
                  file=sys.stderr)  # fmt: skip
            sys.exit(2)
    os.environ["MPLBACKEND"] = "agg"
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if threads is not None and int(threads) > cores:
        print(f"note: NUMBA_NUM_THREADS is {threads}, more than the {cores} cores this process may use: the "
              f"threads take turns and the numba backend slows down; unset it, or set at most {cores}",
              file=sys.stderr)  # fmt: skip


def _handle_signals(handler) -> None:
    """Point SIGINT and SIGTERM at ``handler``, except those in :data:`INHERITED_IGNORED`."""
    for s in SIGNALS:
        if s not in INHERITED_IGNORED or handler is signal.SIG_IGN:
            signal.signal(s, handler)


def _raise_interrupted(signum, frame) -> None:
    raise Interrupted(signum)


class StopOnInterrupt:
    """Inside ``with``, SIGINT and SIGTERM only set a flag (those the process inherited ignored stay ignored);
    calling the object reads it.

    The training loop polls it between steps, so the parameters are never left half-updated; a block of writes
    that must not be cut runs inside one and honours the signal after (:meth:`raise_if_stopped`).
    """

    def __init__(self) -> None:
        self.signum: int | None = None

    def __call__(self) -> bool:
        return self.signum is not None

    def _handle(self, signum, frame) -> None:
        self.signum = signum

    def raise_if_stopped(self, saved: str) -> None:
        """Raise :class:`Interrupted` (``saved``: what was written) if a signal arrived."""
        if self.signum is not None:
            raise Interrupted(self.signum, saved)

    def __enter__(self) -> StopOnInterrupt:
        self._previous = {s: signal.getsignal(s) for s in SIGNALS}
        _handle_signals(self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)


def writable_folder(path: Path, flag: str) -> Path:
    """Create ``path`` if needed and prove that a file can be written there, before any work starts.

    Raises a one-line :class:`UserError` naming ``flag``: the path is a file or lies under one, its name is too
    long, the disk is full or read-only, permission is denied. The first three are the path's own faults: given
    as an option (``flag`` starts with ``--``), they are command-line mistakes (:class:`ConfigError`, exit 2).
    """
    mistake = ConfigError if flag.startswith("--") else UserError
    try:
        for parent in (path, *path.parents):
            if parent.exists() and not parent.is_dir():
                where = "is a file" if parent == path else f"lies under {parent}, which is a file"
                raise mistake(f"{flag} {path} {where}: expected a folder; choose another")
        if path.is_symlink() and not path.exists():
            raise mistake(f"{flag} {path} is a link to {os.readlink(path)}, which does not exist: make that folder, "
                          "or choose another")  # fmt: skip
        missing = [folder for folder in (path, *path.parents) if not folder.exists()]
        path.mkdir(parents=True, exist_ok=True)
        _MADE.extend(missing)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-test-") as f:
            f.write(b"\0" * 4096)
            f.flush()
            os.fsync(f.fileno())
    except OSError as exc:
        kind = mistake if exc.errno == errno.ENAMETOOLONG else UserError
        raise kind(f"{flag} {path}: cannot write there ({_reason(exc)}); choose another folder") from None
    return path


def _reason(exc: OSError) -> str:
    return exc.strerror or errno.errorcode.get(exc.errno or 0, str(exc))


@contextlib.contextmanager
def staged_outputs(folder: Path) -> Iterator[Path]:
    """A hidden folder inside ``folder`` to write a command's files into; on success they are moved into
    ``folder`` while SIGINT and SIGTERM wait, so all of them appear or none. On an error or an interrupt before
    the move, the hidden folder is removed and nothing was saved; a move that fails says which files arrived."""
    stage = Path(tempfile.mkdtemp(prefix=".staging-", dir=folder))
    moved: list[str] = []
    try:
        yield stage
        names = sorted(p.name for p in stage.iterdir())
        in_the_way = [n for n in names if (folder / n).is_dir() and not (folder / n).is_symlink()]
        if in_the_way:  # a file cannot replace a folder: found before anything moves, so all or none still holds
            raise UserError(
                f"could not write into {folder}: {', '.join(in_the_way)} there "
                + ("is a folder" if len(in_the_way) == 1 else "are folders")
                + ", where this command writes files; nothing was saved: move them away or choose another --out"
            )
        with StopOnInterrupt() as stop:
            for name in names:
                os.replace(stage / name, folder / name)
                moved.append(name)
        stop.raise_if_stopped(f"the results were written first: {folder}/ holds {' '.join(moved)}")
    except OSError as exc:
        saved = f"only {' '.join(moved)} were saved" if moved else "nothing was saved"
        raise UserError(f"could not write into {folder} ({_reason(exc)}); {saved}") from None
    finally:
        shutil.rmtree(stage, ignore_errors=True)


class _DropWhenClosed(io.TextIOBase):
    """A text stream that writes through to ``stream`` until the reader goes away or the stream cannot be
    written (a file on a full disk, ``> /dev/full``), then drops everything: the command's own work goes on."""

    def __init__(self, stream, name: str):
        self.stream, self.name = stream, name

    def write(self, text: str) -> int:
        try:
            self.stream.write(text)
            if text.endswith("\n"):
                self.stream.flush()
        except (OSError, ValueError) as exc:
            self._go_quiet(exc)
        return len(text)

    def flush(self) -> None:
        try:
            self.stream.flush()
        except (OSError, ValueError) as exc:
            self._go_quiet(exc)

    def _go_quiet(self, exc: Exception) -> None:
        """Drop all output from now on when the reader is gone (a broken pipe, or the stream closed) or a write
        failed (said once on standard error, when standard output failed); any other ValueError is a bug to see
        (text the encoding cannot hold is escaped, see below)."""
        if isinstance(exc, ValueError) and not self.stream.closed:
            raise exc
        if isinstance(exc, OSError) and not isinstance(exc, BrokenPipeError) and self.name == "stdout":
            print(f"note: standard output failed ({exc.strerror or exc}): the rest of it is dropped; the "
                  "command goes on", file=sys.stderr)  # fmt: skip
        # Point the file descriptor at /dev/null, so the interpreter's own last flush has nowhere to fail.
        with contextlib.suppress(OSError, ValueError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self.stream.fileno())
            os.close(devnull)
        self.stream = open(os.devnull, "w")  # noqa: SIM115 - lives as long as the process

    def isatty(self) -> bool:
        try:
            return self.stream.isatty()
        except ValueError:  # closed
            return False

    def fileno(self) -> int:
        return self.stream.fileno()

    @property
    def encoding(self):
        return self.stream.encoding


def _tolerate_closed_pipes() -> None:
    """Standard output and error that survive their reader going away (``| head -1``), and print what their
    encoding cannot hold (a path of undecodable bytes, say) as backslash escapes instead of failing. One the
    command was started without (``2>&-``: Python makes it None) goes to the null device."""
    for name in ("stdout", "stderr"):
        if getattr(sys, name) is None:
            setattr(sys, name, open(os.devnull, "w"))  # noqa: SIM115 (open for the life of the process)
        stream = getattr(sys, name)
        if not isinstance(stream, _DropWhenClosed):
            if getattr(stream, "errors", None) == "strict":  # where Python chose surrogateescape, raw bytes go out
                with contextlib.suppress(AttributeError, ValueError):  # not a text file, or closed: nothing to fix
                    stream.reconfigure(errors="backslashreplace")
            setattr(sys, name, _DropWhenClosed(stream, name))
