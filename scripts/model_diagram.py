"""Draw the model, for the mathematics chapter: 784 pixels, one linear layer to 10 logits, then a softmax.

``python scripts/model_diagram.py`` (``make figures`` runs it) writes ``docs/figures/model/softmax_regression.svg``.
The SVG is reproducible byte for byte (no date, fixed element ids), so ``tests/test_docs.py`` can check that the
committed picture is the one this script draws.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
matplotlib.rcParams["svg.hashsalt"] = "lr-from-scratch"  # fixed ids: the same drawing gives the same bytes
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import Circle, FancyBboxPatch  # noqa: E402

OUT = Path(__file__).resolve().parent.parent / "docs" / "figures" / "model" / "softmax_regression.svg"
PIXELS = ["$x_{1}$", "$x_{2}$", "$x_{3}$", "$x_{4}$", "$\\vdots$", "$x_{783}$", "$x_{784}$"]
CLASSES = 10


def draw() -> bytes:
    fig = Figure(figsize=(8, 5.6))
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set(xlim=(0, 10), ylim=(-0.3, 6.7), aspect="equal")  # equal: circles stay round
    ax.axis("off")
    pixel_y = [5.8 - i * (5.6 / (len(PIXELS) - 1)) for i in range(len(PIXELS))]
    class_y = [5.8 - k * (5.6 / (CLASSES - 1)) for k in range(CLASSES)]
    for y in pixel_y:  # every pixel feeds every logit: the weight matrix W (10 x 784)
        for z in class_y:
            if y != pixel_y[4]:
                ax.plot([1.2, 4.4], [y, z], color="0.75", linewidth=0.5, zorder=1)
    for y, label in zip(pixel_y, PIXELS, strict=True):
        if label != "$\\vdots$":
            ax.add_patch(Circle((1.0, y), 0.24, facecolor="white", edgecolor="0.2", zorder=2))
        ax.text(1.0, y, label, ha="center", va="center", fontsize=9, zorder=3)
    for k, z in enumerate(class_y):
        ax.add_patch(Circle((4.6, z), 0.24, facecolor="#dbe9f6", edgecolor="0.2", zorder=2))
        ax.text(4.6, z, f"$z_{{{k}}}$", ha="center", va="center", fontsize=9, zorder=3)
        ax.annotate("", xy=(7.2, z), xytext=(4.95, z), arrowprops={"arrowstyle": "-", "color": "0.5"})
        ax.add_patch(Circle((7.5, z), 0.24, facecolor="#fde4c8", edgecolor="0.2", zorder=2))
        ax.text(7.5, z, f"$p_{{{k}}}$", ha="center", va="center", fontsize=9, zorder=3)
    ax.add_patch(FancyBboxPatch((5.6, 0.05), 0.9, 5.9, boxstyle="round,pad=0.05", facecolor="white",
                                edgecolor="0.3", zorder=2))  # fmt: skip
    ax.text(6.05, 3.0, "softmax", rotation=90, ha="center", va="center", fontsize=12, zorder=3)
    ax.text(1.0, 6.3, "784 pixels $x$", ha="center", fontsize=10)
    ax.text(2.8, 6.3, "$z = Wx + b$", ha="center", fontsize=10)
    ax.text(4.6, 6.3, "10 logits", ha="center", fontsize=10)
    ax.text(7.5, 6.3, "10 probabilities", ha="center", fontsize=10)
    ax.text(8.1, 3.0, "$p_k = \\dfrac{e^{z_k}}{\\sum_j e^{z_j}}$\n\n$\\sum_k p_k = 1$", ha="left", va="center",
            fontsize=10)  # fmt: skip
    buf = io.BytesIO()
    fig.savefig(buf, format="svg", metadata={"Date": None})
    return buf.getvalue()


def main() -> int:
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_bytes(draw())
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
