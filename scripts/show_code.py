"""Code shown in the docs is the source itself: this writes it there.

A page marks a block with ``<!-- code: PATH[:NAME] -->`` on the line before a fenced block; the block is the
file ``PATH``, or its function, class or method ``NAME`` (``Class.method``, dedented), decorators included; in
a JavaScript file, ``NAME`` is a ``function NAME(...) {...}`` with the comment lines just above it.
``python scripts/show_code.py`` rewrites every such block in ``docs/*.md`` from the source;
``tests/test_docs.py`` fails when one differs, so a shown block cannot drift from the code it shows.
"""

from __future__ import annotations

import ast
import re
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SHOWN_CODE = re.compile(r"(<!-- code: ([^:\s]+)(?::([\w.]+))? -->\n```(\w*)\n)(.*?)(^```$)", re.DOTALL | re.MULTILINE)


def source_of(path: str, name: str | None) -> str:
    """The text of ``path``, or of its function, class or method ``name`` (decorators included, dedented)."""
    text = (REPO / path).read_text()
    if name is None:
        return text.rstrip("\n")
    if path.endswith(".js"):
        return _js_function(path, text.splitlines(), name)
    nodes = ast.parse(text).body
    for part in name.split("."):
        node = next((n for n in nodes if getattr(n, "name", None) == part), None)
        if node is None:
            raise LookupError(f"{path} has no {name}")
        nodes = getattr(node, "body", [])
    start = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
    return textwrap.dedent("\n".join(text.splitlines()[start - 1 : node.end_lineno]))


def _js_function(path: str, lines: list[str], name: str) -> str:
    """``function name(...) {`` to the ``}`` at its indentation, with the ``//`` lines just above, dedented."""
    starts = [i for i, line in enumerate(lines) if re.match(rf"\s*function {re.escape(name)}\(", line)]
    if len(starts) != 1:
        raise LookupError(f"{path} has {len(starts)} functions {name}, expected one")
    start = starts[0]
    indent = lines[start][: len(lines[start]) - len(lines[start].lstrip())]
    end = next(i for i in range(start, len(lines)) if lines[i] == indent + "}")
    while start > 0 and lines[start - 1].strip().startswith("//"):
        start -= 1
    return textwrap.dedent("\n".join(lines[start : end + 1]))


def shown_blocks(page: Path) -> list[tuple[str, str | None, str]]:
    """``(path, name, shown text)`` of every marked block of ``page``."""
    return [(m.group(2), m.group(3), m.group(5).rstrip("\n")) for m in SHOWN_CODE.finditer(page.read_text())]


def main() -> int:
    for page in sorted((REPO / "docs").glob("*.md")):
        text = page.read_text()
        new = SHOWN_CODE.sub(lambda m: m.group(1) + source_of(m.group(2), m.group(3)) + "\n" + m.group(6), text)
        if new != text:
            page.write_text(new)
            print(f"updated the code shown in {page.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
