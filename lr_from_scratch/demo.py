"""``python -m lr_from_scratch.demo MODEL``: the test images the docs' drawing page offers, and the data it loads.

The page (``docs/demo.md``) runs the model in the browser. Besides what a visitor draws, it offers test images:
the model's most confident mistakes, then the first few of each digit. This command picks them with the model
(a run folder or a ``model.npz``) and writes ``examples.npz``: ``images`` uint8 (n, 28, 28), ``labels`` (n,),
``indices`` (n,) into the test set, and ``mistakes``, how many of the first are the picked mistakes.

:func:`page_data` is what the site build (``scripts/mkdocs_hooks.py``) writes for the page: the weights, the
scaling, those images and the run they come from, every array as base64 of its little-endian bytes.
"""

from __future__ import annotations

import base64
import sys
import zipfile
from pathlib import Path

import numpy as np

from . import metrics as m
from .cli import ArgumentParser, add_data_and_out, path_arg, run_cli, staged_outputs, writable_folder
from .data import load_dataset, scale_images
from .data.field import FIELD
from .errors import UserError
from .files import atomic_open, parse_json
from .model import SoftmaxRegression
from .saved import load_model

EXAMPLES = "examples.npz"
N_MISTAKES, PER_CLASS = 50, 20  #: how many confident mistakes, and how many of each digit, the page offers


def pick_examples(
    probs: np.ndarray, labels: np.ndarray, n_mistakes: int = N_MISTAKES, per_class: int = PER_CLASS
) -> tuple[np.ndarray, int]:
    """``(indices, how many of them are mistakes)``: the ``n_mistakes`` most confident mistakes (most confident
    first), then the first ``per_class`` of each class in test-set order that are not among them.
    probs (N, K), labels (N,)."""
    mistakes = m.most_confident_mistakes(probs, labels, n_mistakes)
    rest = np.setdiff1d(np.arange(len(labels)), mistakes)  # sorted: test-set order
    firsts = [rest[labels[rest] == k][:per_class] for k in range(probs.shape[1])]
    return np.concatenate([mistakes, *firsts]).astype(np.int64), len(mistakes)


def encode(array: np.ndarray) -> dict:
    """``{"dtype", "shape", "base64"}``: the array's little-endian bytes, which the page reads back exactly."""
    array = np.ascontiguousarray(array)
    little = array.astype(array.dtype.newbyteorder("<"))
    return {"dtype": array.dtype.name, "shape": list(array.shape), "base64": base64.b64encode(little).decode()}


def read_examples(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """``(images, labels, indices, mistakes)`` of an ``examples.npz``; one :class:`UserError` line otherwise."""
    try:
        with np.load(path) as examples:
            images, labels, indices, mistakes = (examples[k] for k in ("images", "labels", "indices", "mistakes"))
    except (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile) as error:
        raise UserError(f"{path}: {error}; expected the {EXAMPLES} of python -m lr_from_scratch.demo") from None
    return images, labels, indices, int(mistakes)


def page_data(model_path: Path, metrics_path: Path, examples_path: Path) -> dict:
    """What the page loads: the model (weight (K, D), bias (K,), mean, std), the run's options and test accuracy
    (``metrics.json`` of the run), and the examples. A file missing or malformed is one :class:`UserError`."""
    saved = load_model(model_path)
    try:
        metrics = parse_json(Path(metrics_path).read_text())
        run = {"config": saved.config, "test_accuracy": metrics["test_accuracy"], "best_epoch": metrics["best_epoch"]}
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise UserError(f"{metrics_path}: {error!r}; expected a run's metrics.json") from None
    images, labels, indices, mistakes = read_examples(examples_path)
    return {
        "model": {"weight": encode(saved.weight), "bias": encode(saved.bias), "mean": saved.mean, "std": saved.std},
        "run": run,
        "examples": {"images": encode(images), "labels": labels.tolist(), "indices": indices.tolist(),
                     "mistakes": mistakes},
    }  # fmt: skip


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="python -m lr_from_scratch.demo", description=__doc__.splitlines()[0])
    parser.add_argument("model", type=path_arg, help="a run folder or a model.npz, trained on MNIST")
    add_data_and_out(parser, "runs/demo")  # the docs' own: make figures passes --out docs/figures/demo
    return parser


def _main(argv) -> int:
    args = build_parser().parse_args(argv)
    saved = load_model(args.model)
    dataset = saved.config.get("dataset", "mnist")
    if dataset != "mnist" or saved.weight.shape != (10, FIELD * FIELD):
        raise UserError(
            f"{args.model}: a model of {dataset} with weight {saved.weight.shape}; the page "
            f"draws MNIST digits: expected a model trained on MNIST, weight (10, {FIELD * FIELD})"
        )
    out = writable_folder(args.out, "--out")
    data = load_dataset("mnist", args.data_dir, progress=not args.no_progress)
    model = SoftmaxRegression(saved.weight.astype(np.float64), saved.bias.astype(np.float64))
    probs = model.predict_proba(scale_images(data.test_images, saved.mean, saved.std, "float64"))
    indices, n_mistakes = pick_examples(probs, data.test_labels.astype(np.int64))
    with staged_outputs(out) as stage, atomic_open(stage / EXAMPLES) as f:
        np.savez_compressed(f, images=data.test_images[indices], labels=data.test_labels[indices], indices=indices,
                            mistakes=np.int64(n_mistakes))  # fmt: skip
    print(f"wrote {out / EXAMPLES}: {n_mistakes} confident mistakes and {len(indices) - n_mistakes} others")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_cli(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
