"""Files: paths as a user writes them, and atomic writes (into a temporary file beside the target, then a rename).

An interrupted write (Ctrl-C, a full disk, a crash) leaves the old file or no file, never half of a new one.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from .errors import ConfigError, UserError


def expand_home(path: str | os.PathLike) -> Path:
    """``path`` with a leading ``~`` or ``~user`` expanded, as a shell would. A user this machine does not know
    (``~runs/x``, meant as ``~/runs/x``) is a :class:`ConfigError`, not ``pathlib``'s traceback."""
    try:
        return Path(path).expanduser()
    except RuntimeError:
        home = str(path).split(os.sep)[0]
        raise ConfigError(f"{path}: this machine has no user {home[1:]!r} for {home} to stand for: write ~/ for "
                          "your own home folder, or the path without ~") from None  # fmt: skip


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO[Any]]:
    """Open a temporary file in ``path``'s folder; on success rename it onto ``path``, on error delete it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the mode open() would
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def parse_json(text: str) -> Any:
    """``json.loads``, where text nested deeper than Python can recurse is a ``ValueError`` like any other
    malformed JSON (not a ``RecursionError``)."""
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError("nested too deeply to read") from None


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_open(path, "wb") as f:
        f.write(data)


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` as UTF-8 to ``path`` atomically. What UTF-8 cannot hold (a path's undecodable bytes, which
    Python keeps as lone surrogates) is written as backslash escapes."""
    write_bytes(path, text.encode("utf-8", "backslashreplace"))


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON to ``path`` atomically. JSON has no NaN or infinity (strict parsers reject
    Python's ``NaN``), so a non-finite float is written as ``null``."""
    write_text(path, json.dumps(_finite_or_none(obj), indent=2, sort_keys=True, allow_nan=False) + "\n")


def _finite_or_none(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite_or_none(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite_or_none(v) for v in obj]
    return obj


def replace_region(path: str | os.PathLike, name: str, text: str) -> None:
    """Rewrite what lies between ``<!-- NAME -->`` and ``<!-- /NAME -->`` in the text file ``path`` (a page whose
    figures a command writes), atomically. ``text`` goes in as it is: give it its own newlines for a block."""
    page = Path(path).read_text()
    begin, end = f"<!-- {name} -->", f"<!-- /{name} -->"
    if page.count(begin) != 1 or page.count(end) != 1:
        raise UserError(f"{path}: markers {begin} ... {end} not found once each; cannot write its figures")
    head, rest = page.split(begin)
    write_text(path, head + begin + text + end + rest.split(end)[1])


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
