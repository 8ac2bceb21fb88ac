"""What every command shares: one-line errors with the right exit code, and a clean Ctrl-C."""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Callable

from .errors import ConfigError, UserError


class ArgumentParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose mistakes are one line (``error: ...``) and exit 2, like every other error."""

    def error(self, message: str):
        raise ConfigError(f"{message} (see {self.prog} --help)")


def run_cli(main: Callable[[list[str] | None], int], argv: list[str] | None = None) -> int:
    """Run ``main(argv)``; print a :class:`UserError` as one line and return its exit code, 130 on Ctrl-C."""
    try:
        return main(argv)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted: nothing was saved", file=sys.stderr)
        return 130


class StopOnInterrupt:
    """Inside ``with``, Ctrl-C (SIGINT) only sets a flag; calling the object reads it.

    The training loop polls it between steps, so the parameters are never left half-updated.
    """

    def __init__(self) -> None:
        self.requested = False

    def __call__(self) -> bool:
        return self.requested

    def _handle(self, signum, frame) -> None:
        self.requested = True

    def __enter__(self) -> StopOnInterrupt:
        self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        signal.signal(signal.SIGINT, self._previous)
