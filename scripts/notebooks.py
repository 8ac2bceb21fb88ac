"""Each chapter as a Jupyter notebook, made from the chapter: ``docs/notebooks/<chapter>.ipynb``.

The prose, the formulas, the figures and the code the chapter shows become markdown cells; every ``pycon``
example becomes code cells (its ``>>>`` and ``...`` lines without the printed output, which running the
notebook prints again; a new cell begins after each output). So a notebook runs top to bottom exactly what
the chapter's doctests run, and a reader can change a line and see what happens.
``python scripts/notebooks.py`` rewrites them all; ``tests/test_notebooks.py`` checks that they match their
chapters and runs each one.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import nbformat

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "docs"
OUT = DOCS / "notebooks"
#: The chapters that run code (the others, the index and the generated benchmarks page, have none).
CHAPTERS = ("data", "math", "numpy", "torch", "training", "fast")
PYCON = re.compile(r"^```pycon\n(.*?)^```\n", re.DOTALL | re.MULTILINE)
#: Where a chapter links to its notebook, right under its title.
LINK = "[Run this chapter as a notebook](notebooks/{name}.ipynb)"


def code_cells(example: str) -> list[tuple[str, bool]]:
    """The code of a pycon example, its prompts taken off and its output dropped, as cells: a new cell after each
    printed output, so that running the notebook shows every output the chapter shows. Each cell comes with
    whether the chapter shows it raising (its output a traceback)."""
    cells, lines, output = [], [], []
    for line in example.splitlines():
        if line.startswith((">>> ", "... ")) or line in (">>>", "..."):
            if output:
                cells.append((lines, output))
                lines, output = [], []
            lines.append(line[4:])
        elif line.strip():
            output.append(line)
    cells.append((lines, output))
    return [
        ("\n".join(code).rstrip(), out[:1] == ["Traceback (most recent call last):"]) for code, out in cells if code
    ]


def markdown_cell(text: str) -> nbformat.NotebookNode:
    # From docs/notebooks/, the chapter's figures and pages are one folder up.
    text = re.sub(r"\]\((?!https?://|#)([^)]+)\)", r"](../\1)", text.strip("\n"))
    return nbformat.v4.new_markdown_cell(text)


def notebook(name: str) -> nbformat.NotebookNode:
    """The notebook of chapter ``docs/<name>.md``."""
    page = (DOCS / f"{name}.md").read_text().replace(LINK.format(name=name) + "\n\n", "")
    cells = [
        nbformat.v4.new_markdown_cell(
            f"*Made from [`docs/{name}.md`](../{name}.md) by `scripts/notebooks.py`: run it with the project "
            "installed (`make train` installs it into `.venv`), from the repository's root folder.*"
        )
    ]
    position = 0
    for match in PYCON.finditer(page):
        if page[position : match.start()].strip():
            cells.append(markdown_cell(page[position : match.start()]))
        for code, raises in code_cells(match.group(1)):
            # Jupyter's tag for a cell that is meant to raise: the notebook runs on past it
            cells.append(nbformat.v4.new_code_cell(code, metadata={"tags": ["raises-exception"]} if raises else {}))
        position = match.end()
    if page[position:].strip():
        cells.append(markdown_cell(page[position:]))
    for i, cell in enumerate(cells):
        cell["id"] = f"{name}-{i}"  # stable ids: the same chapter gives the same file
    book = nbformat.v4.new_notebook(cells=cells)
    book.metadata = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}
    return book


def text_of(book: nbformat.NotebookNode) -> str:
    return nbformat.writes(book) + "\n"


def main() -> int:
    OUT.mkdir(exist_ok=True)
    for name in CHAPTERS:
        path = OUT / f"{name}.ipynb"
        text = text_of(notebook(name))
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
            print(f"wrote {path.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
