"""Figures, drawn with matplotlib's object API (no pyplot state, no display needed), written atomically."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from .files import write_bytes

DIGITS = [str(k) for k in range(10)]
#: Every raster figure's resolution: sharp on a high-density screen and in print.
DPI = 150


def figure(**kwargs):
    """A matplotlib ``Figure`` with constrained layout, not attached to pyplot (so no display is needed)."""
    from matplotlib.figure import Figure

    return Figure(layout="constrained", **kwargs)


def save(fig, path: Path) -> None:
    """Write ``fig`` as PNG (:data:`DPI`) to ``path`` atomically."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    write_bytes(path, buf.getvalue())


def plot_history(history: list[dict], path: Path, title: str = "", kept_epoch: int | None = None) -> None:
    """Loss and accuracy per epoch, train and validation, side by side; a dashed line where the learning rate
    drops, and a marker on ``kept_epoch``, the epoch whose weights the run kept."""
    epochs = [row["epoch"] for row in history]
    drops = [row["epoch"] for before, row in zip(history, history[1:], strict=False) if row["lr"] < before["lr"]]
    fig = figure(figsize=(10, 4))
    for ax, metric, label in zip(fig.subplots(1, 2), ("loss", "accuracy"), ("cross-entropy", "accuracy"), strict=True):
        ax.plot(epochs, [row[f"train_{metric}"] for row in history], "o-", label="train")
        val = [
            (e, row[f"val_{metric}"])
            for e, row in zip(epochs, history, strict=True)
            if row[f"val_{metric}"] is not None
        ]
        if val:
            ax.plot(*zip(*val, strict=True), "s-", label="validation")
        for i, epoch in enumerate(drops):
            ax.axvline(epoch - 0.5, color="grey", linestyle="--", linewidth=1,
                       label="learning rate drops" if i == 0 else None)  # fmt: skip
        if kept_epoch:
            kept = [row for row in history if row["epoch"] == kept_epoch][0]
            value = kept[f"val_{metric}"] if kept[f"val_{metric}"] is not None else kept[f"train_{metric}"]
            ax.plot([kept_epoch], [value], marker="*", markersize=14, color="crimson", linestyle="none",
                    label=f"kept: epoch {kept_epoch}")  # fmt: skip
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
        ax.legend(loc="best", fontsize=8)
    if title:
        fig.suptitle(title)
    save(fig, path)


def plot_confusion(cm: np.ndarray, path: Path) -> None:
    """The confusion matrix, counts written in each cell."""
    fig = figure(figsize=(6.5, 5.5))
    ax = fig.subplots()
    image = ax.imshow(np.log1p(cm), cmap="Blues")
    for (i, j), count in np.ndenumerate(cm):
        ax.text(j, i, str(count), ha="center", va="center", fontsize=7, color="white" if i == j else "black")
    ax.set(xticks=range(len(cm)), yticks=range(len(cm)), xlabel="predicted", ylabel="true", title="confusion matrix")
    fig.colorbar(image, ax=ax, label="log(1 + count)")
    save(fig, path)


def plot_curves(curves: dict[int, tuple], areas: dict[int, float], path: Path, kind: str) -> None:
    """One-vs-rest ROC (``kind="roc"``: x = FPR, y = TPR) or precision-recall curves, one line per class."""
    fig = figure(figsize=(7.5, 5))
    ax = fig.subplots()
    name = "AUC" if kind == "roc" else "AP"
    for k, (x, y) in curves.items():
        ax.plot(x, y, label=f"{k}: {name} {areas[k]:.4f}", linewidth=1)
    if kind == "roc":
        ax.set(xlabel="false positive rate", ylabel="true positive rate", xscale="log", xlim=(1e-4, 1))
    else:
        ax.set(xlabel="recall", ylabel="precision", ylim=(0.5, 1.01))
    ax.set_title("one-vs-rest " + ("ROC curves" if kind == "roc" else "precision-recall curves"))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))  # beside the plot: it hides no curve
    save(fig, path)


def plot_reliability(cal: dict, path: Path) -> None:
    """Reliability diagram: accuracy against confidence per bin, and how many samples fall in each bin."""
    fig = figure(figsize=(9, 4))
    left, right = fig.subplots(1, 2)
    centers, width = (cal["edges"][:-1] + cal["edges"][1:]) / 2, np.diff(cal["edges"])
    filled = cal["counts"] > 0
    left.bar(centers[filled], cal["accuracy"][filled], width=width[filled], edgecolor="black", label="accuracy")
    left.plot([0, 1], [0, 1], "k--", label="perfect calibration")
    left.set(xlabel="confidence", ylabel="accuracy", title=f"reliability (ECE {cal['ece']:.4f})")
    left.legend()
    right.bar(centers, cal["counts"], width=width, edgecolor="black")
    right.set(xlabel="confidence", ylabel="samples", yscale="log", title="samples per confidence bin")
    save(fig, path)


def plot_confidence(confidence: np.ndarray, correct: np.ndarray, path: Path) -> None:
    """Distribution of the top-class confidence, correct against wrong predictions."""
    fig = figure(figsize=(6, 4))
    ax = fig.subplots()
    bins = np.linspace(0, 1, 41)
    for name, chosen in (("correct", correct), ("wrong", ~correct)):
        if chosen.any():  # a density of nothing is 0 / 0
            ax.hist(confidence[chosen], bins=bins, alpha=0.6, density=True, label=f"{name} ({chosen.sum()})")
    ax.set(xlabel="confidence of the predicted class", ylabel="density", title="confidence: correct vs wrong")
    ax.legend()
    save(fig, path)


def plot_image_grid(
    images: np.ndarray, titles: list[str], path: Path, title: str, cmap: str = "gray", cols: int = 8
) -> None:
    """Images (n, h, w) in a grid of up to ``cols`` columns, each with its caption; a diverging ``cmap``
    is centred on 0. Drawn in float64: float32 weights near its largest value (about 3e38) would overflow in
    matplotlib's own scaling to the colour range."""
    images = np.asarray(images, dtype=np.float64)
    if len(images) == 0:
        fig = figure(figsize=(4, 1.5))
        fig.text(0.5, 0.5, f"{title}: none", ha="center", va="center")
        save(fig, path)
        return
    cols = min(cols, len(images))
    rows = -(-len(images) // cols)
    fig = figure(figsize=(1.6 * cols, 1.9 * rows + 0.4))
    axes = np.atleast_1d(fig.subplots(rows, cols)).ravel()
    for ax in axes:
        ax.axis("off")
    for ax, image, caption in zip(axes, images, titles, strict=False):
        limit = np.abs(image).max() or 1
        kwargs = {"vmin": -limit, "vmax": limit} if cmap != "gray" else {}
        ax.imshow(image, cmap=cmap, **kwargs)
        ax.set_title(caption, fontsize=8)
    fig.suptitle(title)
    save(fig, path)
