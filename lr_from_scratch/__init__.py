"""Multinomial logistic regression on MNIST, from scratch in NumPy (and Numba)."""

import os
import signal
import sys

__version__ = "0.1.0"


def _stop_while_loading(signum, frame) -> None:
    """Ctrl-C or SIGTERM before :func:`.cli.run_cli` takes over (while this package, NumPy, Numba or torch load):
    one line, at once (an exception raised inside a library's import can be caught there), with nothing but the
    modules every Python has loaded by then. Nothing has started, so nothing is lost."""
    try:  # noqa: SIM105  (contextlib.suppress: one more module to load first)
        os.write(2, b"interrupted: nothing was saved\n")
    except OSError:  # no stderr: the exit status says it
        pass
    os._exit(128 + signum)


if sys.argv[:1] == ["-m"]:  # python -m lr_from_scratch.<command>; signals the shell ignores stay ignored
    for _signal in (signal.SIGINT, signal.SIGTERM):
        if signal.getsignal(_signal) is not signal.SIG_IGN:
            signal.signal(_signal, _stop_while_loading)

from .cli import starting_command  # noqa: E402  (after the handler: its imports take tens of milliseconds)

starting_command()  # python -m lr_from_scratch.<command>: checks made, and a Ctrl-C handled, before libraries load
