"""Figures, drawn with matplotlib's object API (no pyplot state, no display needed)."""

from __future__ import annotations

import io
from pathlib import Path

from .files import write_bytes


def plot_history(history: list[dict], path: Path, title: str = "") -> None:
    """Loss and accuracy per epoch, train and validation, side by side; written atomically as PNG."""
    from matplotlib.figure import Figure

    epochs = [row["epoch"] for row in history]
    fig = Figure(figsize=(10, 4), layout="constrained")
    for ax, metric, label in zip(fig.subplots(1, 2), ("loss", "accuracy"), ("cross-entropy", "accuracy"), strict=True):
        ax.plot(epochs, [row[f"train_{metric}"] for row in history], "o-", label="train")
        val = [
            (e, row[f"val_{metric}"])
            for e, row in zip(epochs, history, strict=True)
            if row[f"val_{metric}"] is not None
        ]
        if val:
            ax.plot(*zip(*val, strict=True), "s-", label="validation")
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    write_bytes(path, buf.getvalue())
