"""No number typed by hand: every figure the docs and the README quote is either written into them by the
project's commands (between markers) or backed by the output it comes from, checked here, all of them.

A *figure* is a number with a decimal point, a percent sign, a thousands separator or a unit, or a whole
number of 100 or more, in the prose of ``docs/*.md`` and ``README.md``. Not prose: code (fenced or inline, run
by the tests or written from the source), formulas, links, and the regions the commands write. Each figure
left must be a rounding of a value in one of its page's sources (the JSON a command wrote, or the record of a
past measurement), or one of :data:`DEFINITIONS`: a fact of the design or of the data, not a measurement.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest

from .conftest import REPO

DOCS = REPO / "docs"
FIGURES = DOCS / "figures"

#: Numbers that are not measured: facts of the data, the design and its defaults, versions, sizes.
DEFINITIONS = {
    "784": "pixels per MNIST image (28 x 28)",
    "60,000": "MNIST's training images",
    "10,000": "MNIST's test images",
    "70,000": "MNIST's images in all",
    "50,000": "the training part of the classic mnist.pkl",
    "54,000": "the training images left by the default 10% validation split",
    "6,000": "the validation images of the default split",
    "65,535": "the largest uint16: the most pixels a sparse row can number",
    "0.1307": "MNIST's pixel mean, the normalisation constant (a test checks it against the data)",
    "0.3081": "MNIST's pixel standard deviation, likewise",
    "0.01": "the default learning rate",
    "0.9": "the default momentum",
    "0.1": "the default validation split and learning-rate decay",
    "10%": "the default validation split",
    "0.5": "a dampening used as an example",
    "2.30": "log 10, the loss of a uniform guess over 10 classes",
    "1.88": "the FLOP of a dense epoch: 60,000 x 2 x 2 x 784 x 10 / 1e9",
    "3.10": "the oldest Python the project supports",
    "2.13": "the torch version constraints.txt pins",
    "2.14": "the torch version of the torchvision environment",
    "0.29": "the torchvision version of the torchvision environment",
    "5.5 GB": "the size of the torchvision environment (pip's download)",
    "150 KB": "the bytes of buffers and weights one step touches: 784 rows x 16 lanes x 4 bytes x 3 arrays",
    "50 KB": "the float32 weights in the kernels' layout: 784 x 16 x 4 bytes",
    "4 KB": "the weights squeezed into a small table for an experiment: 64 rows x 16 lanes x 4 bytes",
    "1%": "the share of the evidence maps' pixels that saturate their colour scale (SATURATED, demo/page.js)",
    "92%": "a round accuracy: the benchmarks' target, and the example of an exercise",
    "0.2": "a hypothetical difference of accuracy in an exercise",
    "90%": "an example accuracy in an exercise",
    "100": "a round count in prose (100 SGD steps of the equivalence test)",
    "128": "the batch from which threads started before (history)",
    "255": "the largest uint8 pixel",
    "256": "an example batch size, and the entries of a table of uint8 values",
    "400": "the learning-rate range test's default number of steps",
    "1000": "a batch size of the equivalence tests",
    "1024": "a batch size of the benchmarks",
    "4096": "the side of the matrix product that measures the peak",
    "785": "the rows of an experiment's array: 784 pixels and the bias",
    "2049": "the IDX magic number of a label file",
    "2051": "the IDX magic number of an image file",
    "130": "the exit status after Ctrl-C (128 + SIGINT)",
    "143": "the exit status after SIGTERM (128 + SIGTERM)",
    "2023": "a year",
    "132": "the streaming multiprocessors of an H100",
    "65,536": "the 32-bit registers of a multiprocessor (every CUDA GPU since compute capability 5.0)",
    "9.0": "the compute capability of an H100",
    "512": "the sparse CUDA kernel's block size (SPARSE_THREADS)",
    "1,024": "the most threads a CUDA block can have; the most pixels of the sparse CUDA kernel (MAX_PIXELS)",
    "2,048": "the most threads an H100's multiprocessor holds at once",
    "8192": "the largest batch size of the benchmarks",
}
#: Each page's sources: the outputs and records whose values it may quote.
SOURCES = {
    "README.md": ["benchmarks.json", "figures/training/metrics.json", "figures/fast/measured.json"],
    "data.md": ["figures/explore/summary.json"],
    "math.md": [],
    "numpy.md": ["figures/training/metrics.json"],
    "torch.md": ["benchmarks.json", "figures/training/metrics.json"],
    "training.md": [
        "figures/training/lr_find.json",
        "figures/training/batch_sweep.json",
        "figures/training/metrics.json",
        "figures/training/patience.json",
    ],  # fmt: skip
    "fast.md": ["benchmarks.json", "figures/fast/measured.json", "figures/explore/summary.json"],
    "evaluation.md": ["figures/evaluation/evaluation.json"],
    "index.md": [],
    "gpu.md": ["figures/explore/summary.json"],
    "demo.md": ["figures/training/metrics.json"],
}
FIGURE = re.compile(
    r"(?<![\w.,/$#-])(\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+\.\d+|\d+)"  # the number (not an issue's #number)
    r"(%|x\b|M\b|\s(?:ms|µs|us|ns|s|KB|MB|GB|GFLOP/s)\b)?"  # its unit, if any: 92%, 4.4x, 2.7M, 22 ms
)


def prose(text: str) -> str:
    """``text`` without code, formulas, links' targets, HTML comments and the regions commands write."""
    text = re.sub(r"<!-- (\w[\w:-]*) -->.*?<!-- /\1 -->", " ", text, flags=re.DOTALL)  # generated regions
    text = re.sub(r"^```.*?^```", " ", text, flags=re.DOTALL | re.MULTILINE)
    text = re.sub(r"<!--.*?-->", " ", text, flags=re.DOTALL)
    text = re.sub(r"\$\$.*?\$\$|\$[^$\n]+\$", " ", text, flags=re.DOTALL)
    text = re.sub(r"`[^`\n]+`", " ", text)
    text = re.sub(r"\]\([^)]*\)", "]", text)
    text = re.sub(r"^#+ \d+\.", "#", text, flags=re.MULTILINE)  # chapter numbers
    return re.sub(r"^\s*\d+\. ", " ", text, flags=re.MULTILINE)  # numbered lists


def figures(text: str) -> list[str]:
    """The figures of the module docstring in ``text``."""
    found = []
    for match in FIGURE.finditer(prose(text)):
        number, unit = match.group(1), (match.group(2) or "").strip()
        if unit or "." in number or "," in number or int(number) >= 100:
            found.append(number + (unit if unit in ("%", "x", "M") else " " + unit if unit else ""))
    return found


def values(path: Path) -> list[float]:
    """Every number in a JSON file, however deep."""

    def walk(node):
        if isinstance(node, dict):
            for v in node.values():
                yield from walk(v)
        elif isinstance(node, list):
            for v in node:
                yield from walk(v)
        elif isinstance(node, int | float) and not isinstance(node, bool) and math.isfinite(node):
            yield float(node)

    return list(walk(json.loads(path.read_text())))


def quoted_from(figure: str, sources: list[float]) -> bool:
    """Whether ``figure`` (such as ``92.62%``, ``2,704,899``, ``0.40 s``, ``4.4x``) rounds one of ``sources``."""
    number, _, unit = figure.partition(" ")
    if number[-1] in "xM":
        number, unit = number[:-1], number[-1]
    percent = number.endswith("%")
    number = number.rstrip("%").replace(",", "")
    decimals = len(number.split(".")[1]) if "." in number else 0
    value = float(number)
    scale = {"%": 0.01, "M": 1e6, "k": 1e3, "ms": 1e-3, "µs": 1e-6, "us": 1e-6, "ns": 1e-9}.get(
        "%" if percent else unit, 1.0
    )
    tolerance = 0.5 * 10.0**-decimals * scale * (1 + 1e-9)
    return any(abs(source - value * scale) <= tolerance for source in sources)


def written_by_the_report(page: Path) -> bool:
    """A page ``python -m benchmarks.report`` wrote (benchmarks.md, a GPU's, an interrupted run's): all generated."""
    return "\n\nGenerated by `python -m benchmarks.report" in page.read_text()[:300]


WRITTEN_BY_HAND = sorted(p.name for p in DOCS.glob("*.md") if not written_by_the_report(p))


@pytest.mark.parametrize("page", [*WRITTEN_BY_HAND, "README.md"])
def test_every_figure_is_generated_or_backed_by_its_source(page):
    path = REPO / page if page == "README.md" else DOCS / page
    sources = [v for name in SOURCES[page] for v in values(DOCS / name)]
    unbacked = [f for f in figures(path.read_text()) if f not in DEFINITIONS and not quoted_from(f, sources)]
    assert unbacked == [], (
        f"{page} quotes figures that no output backs: {unbacked}. Generate them between markers, or quote a "
        f"value of {SOURCES[page] or 'a source'}, or (a fact, not a measurement) add them to DEFINITIONS"
    )


def test_the_check_catches_a_typed_figure():
    text = "It trains in 22 ms, at 2,704,899 samples/s (`--lr 0.5`), $e^{0.5}$, 28 x 28, 4.4x, numba#8852."
    assert figures(text) == ["22 ms", "2,704,899", "4.4x"]
    assert quoted_from("92.62%", [0.92621]) and not quoted_from("92.62%", [0.9271])
    assert quoted_from("2.7M", [2_704_899.0]) and quoted_from("0.40 s", [0.4012]) and not quoted_from("22 ms", [0.03])
