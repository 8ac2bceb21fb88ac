"""Each chapter with code is also a notebook: made from the chapter, linked from it, and run top to bottom here."""

from __future__ import annotations

import nbformat
import pytest
from nbclient import NotebookClient

from .conftest import REPO, load_script

NOTEBOOKS = load_script("notebooks")


def test_every_chapter_with_examples_has_its_notebook_and_links_it():
    with_examples = {p.stem for p in (REPO / "docs").glob("*.md") if "```pycon" in p.read_text()}
    assert with_examples == set(NOTEBOOKS.CHAPTERS)
    for name in NOTEBOOKS.CHAPTERS:
        assert NOTEBOOKS.LINK.format(name=name) in (REPO / "docs" / f"{name}.md").read_text()


@pytest.mark.parametrize("name", NOTEBOOKS.CHAPTERS)
def test_the_notebook_is_made_from_its_chapter(name):
    committed = (REPO / "docs" / "notebooks" / f"{name}.ipynb").read_text()
    assert committed == NOTEBOOKS.text_of(NOTEBOOKS.notebook(name)), "run python scripts/notebooks.py"


@pytest.mark.parametrize("name", NOTEBOOKS.CHAPTERS)
def test_the_notebook_runs_top_to_bottom(name):
    book = nbformat.read(REPO / "docs" / "notebooks" / f"{name}.ipynb", as_version=4)
    code = [cell for cell in book.cells if cell.cell_type == "code"]
    assert len(code) >= 1
    NotebookClient(book, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(REPO)}}).execute()
    raising = [cell for cell in code if "raises-exception" in cell.metadata.get("tags", [])]
    errors = [cell for cell in code if any(out.output_type == "error" for out in cell.outputs)]
    assert errors == raising  # the cells the chapter shows raising, and no other
    assert any(cell.outputs for cell in code), "the examples print what the chapter shows"
