"""Write the outputs the README quotes into it: the training command's output, from the run that
``make figures`` makes (``docs/figures/training/train_output.txt``), into the region ``<!-- output:train -->``.

``python scripts/quote_outputs.py`` (``make figures`` runs it after that run).
"""

from __future__ import annotations

import sys
from pathlib import Path

from lr_from_scratch.files import replace_region

REPO = Path(__file__).resolve().parent.parent
OUTPUT = REPO / "docs" / "figures" / "training" / "train_output.txt"


def excerpt(lines: list[str], head: int = 4, tail: int = 3) -> str:
    """The first ``head`` lines (the set-up and first epochs), ``...``, and the last ``tail`` (the results)."""
    kept = lines if len(lines) <= head + tail else [*lines[:head], "...", *lines[-tail:]]
    return "\n".join(kept)


def main() -> int:
    lines = OUTPUT.read_text().splitlines()
    replace_region(REPO / "README.md", "output:train", f"\n```text\n{excerpt(lines)}\n```\n")
    print(f"wrote the training output into README.md from {OUTPUT.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
