"""Errors that reach a user as one line: what was got, what was expected, what to do.

Command-line entry points catch :class:`UserError` and print ``error: <message>`` with no traceback, then exit
with ``exit_code`` (2 for command-line mistakes, 1 for everything else).
"""


class UserError(Exception):
    """A problem the user can fix; its message is the whole explanation."""

    exit_code = 1


class ConfigError(UserError, ValueError):
    """A training option outside its range (a command-line mistake: exit 2)."""

    exit_code = 2


class DataError(UserError):
    """MNIST is missing, unreachable, or fails verification."""


class TrainingDiverged(UserError, ValueError):
    """The loss became NaN or infinite. ``happened`` says where, without the advice that follows it in the
    message (the command line's options), so that an API can give its own. A ValueError too, as scikit-learn's
    own estimators raise for a fit that overflows."""

    def __init__(self, message: str, happened: str | None = None):
        super().__init__(message)
        self.happened = happened or message


def first_line(exc: BaseException, width: int = 120) -> str:
    """``exc`` in one line, for a table or a log: its class and the first line of its message, cut at ``width``
    (a compiler's or a driver's error can run to pages)."""
    lines = str(exc).strip().splitlines()
    return type(exc).__name__ + (f": {lines[0][:width]}" if lines else "")
