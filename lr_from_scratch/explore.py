"""``python -m lr_from_scratch.explore``: look at the data before modelling it.

Writes into ``--out`` (default ``runs/explore``): the class distribution, per-pixel mean and standard
deviation maps, the average digit of each class, brightness and contrast histograms, a labelled grid of
samples, and ``summary.md`` (with ``summary.json``) with the figures that matter for the model (scaling
constants, sparsity).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from .cli import ArgumentParser, add_data_and_out, run_cli, staged_outputs, writable_folder
from .data import load_mnist
from .files import write_json, write_text
from .plots import DIGITS, figure, plot_image_grid, save

FIGURES = {
    "classes": "class_distribution.png",
    "pixels": "pixel_mean_std.png",
    "averages": "average_digits.png",
    "brightness": "brightness_contrast.png",
    "samples": "samples.png",
}


def explore(mnist, out: Path) -> dict:
    """Every figure of the module docstring, and the numbers behind them."""
    train = mnist.train_images.astype(np.float64) / 255
    labels = mnist.train_labels
    counts = {"train": np.bincount(labels, minlength=10), "test": np.bincount(mnist.test_labels, minlength=10)}
    brightness = train.mean(axis=(1, 2))
    plot_class_distribution(counts, out / FIGURES["classes"])
    plot_pixel_maps(train, out / FIGURES["pixels"])
    averages = np.stack([train[labels == k].mean(axis=0) for k in range(10)])
    plot_image_grid(
        averages, [f"average {k}" for k in range(10)], out / FIGURES["averages"], "the average digit", cols=5
    )
    plot_brightness_contrast(brightness, train.std(axis=(1, 2)), labels, out / FIGURES["brightness"])
    rng = np.random.default_rng(0)
    picks = np.concatenate([rng.choice(np.flatnonzero(labels == k), 4, replace=False) for k in range(10)])
    captions = [f"#{i}: {labels[i]}" for i in picks]
    plot_image_grid(mnist.train_images[picks], captions, out / FIGURES["samples"], "training samples (index: label)")
    by_class = [brightness[labels == k].mean() for k in range(10)]
    return {
        "train_counts": counts["train"].tolist(),
        "test_counts": counts["test"].tolist(),
        "mean": float(train.mean()),
        "std": float(train.std()),
        "zero_fraction": float((mnist.train_images == 0).mean()),
        "nonzero_per_image": float((mnist.train_images != 0).sum(axis=(1, 2)).mean()),
        "brightest_digit": int(np.argmax(by_class)),
        "dimmest_digit": int(np.argmin(by_class)),
    }


def plot_class_distribution(counts: dict, path: Path) -> None:
    fig = figure(figsize=(7, 3.5))
    ax = fig.subplots()
    for offset, (name, c) in zip((-0.2, 0.2), counts.items(), strict=True):
        ax.bar(np.arange(10) + offset, c / c.sum(), width=0.4, label=f"{name} ({c.sum():,})")
    ax.set(xticks=range(10), xticklabels=DIGITS, xlabel="digit", ylabel="fraction", title="class distribution")
    ax.legend()
    save(fig, path)


def plot_pixel_maps(train: np.ndarray, path: Path) -> None:
    fig = figure(figsize=(8, 3.5))
    for ax, name, image in zip(
        fig.subplots(1, 2), ("mean", "std"), (train.mean(axis=0), train.std(axis=0)), strict=True
    ):
        fig.colorbar(ax.imshow(image, cmap="magma"), ax=ax)
        ax.set_title(f"per-pixel {name} (training set, x / 255)")
        ax.axis("off")
    save(fig, path)


def plot_brightness_contrast(brightness: np.ndarray, contrast: np.ndarray, labels: np.ndarray, path: Path) -> None:
    fig = figure(figsize=(9, 3.5))
    for ax, values, name in zip(fig.subplots(1, 2), (brightness, contrast), ("brightness", "contrast"), strict=True):
        for k in (0, 1, 8):
            ax.hist(values[labels == k], bins=50, alpha=0.5, density=True, label=f"digit {k}")
        ax.set(xlabel=f"per-image {name} ({'mean' if name == 'brightness' else 'std'} of x / 255)", ylabel="density")
        ax.legend()
    save(fig, path)


def summary(facts: dict) -> str:
    lines = [
        "# MNIST at a glance",
        "",
        f"- {sum(facts['train_counts']):,} training and {sum(facts['test_counts']):,} test images of 28 x 28 pixels.",
        f"- Classes are nearly balanced: from {min(facts['train_counts']):,} to {max(facts['train_counts']):,} "
        "training images per digit.",
        f"- Pixel mean {facts['mean']:.4f} and standard deviation {facts['std']:.4f} after x / 255: the "
        "normalisation constants 0.1307 and 0.3081.",
        f"- {facts['zero_fraction']:.1%} of the pixels are 0; an image has {facts['nonzero_per_image']:.0f} "
        "non-zero pixels of 784 on average (what the sparse kernels exploit).",
        f"- The brightest digit on average is {facts['brightest_digit']}, the dimmest {facts['dimmest_digit']}.",
        "",
    ]
    return "\n".join(lines + [f"![{name}]({file})" for name, file in FIGURES.items()] + [""])


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="python -m lr_from_scratch.explore", description=__doc__.splitlines()[0])
    add_data_and_out(parser, "runs/explore")
    return parser


def _main(argv) -> int:
    args = build_parser().parse_args(argv)
    out = writable_folder(args.out, "--out")
    mnist = load_mnist(args.data_dir, progress=not args.no_progress)
    with staged_outputs(out) as stage:
        facts = explore(mnist, stage)
        write_text(stage / "summary.md", summary(facts))
        write_json(stage / "summary.json", facts)
    print(f"mean {facts['mean']:.4f}, std {facts['std']:.4f}, {facts['zero_fraction']:.1%} zero pixels")
    print(f"wrote {out}/: summary.md summary.json {' '.join(FIGURES.values())}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_cli(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
