"""``python -m lr_from_scratch.evaluate RUN_DIR_OR_MODEL_NPZ``: take a trained model's mistakes apart.

Works for a model trained by either package (the shared ``model.npz``), on the test set of the dataset it was
trained on (the 10,000 MNIST test images by default). There it computes, in NumPy: accuracy and loss;
per-class precision, recall, F1 and support; the confusion matrix; one-vs-rest ROC curves with AUC and
precision-recall curves with average precision; calibration (expected calibration error and a reliability
diagram); the confidence of correct and wrong predictions; the most common confusions and most confident
mistakes; the average image of each frequent confusion; the weights as one image-sized template per class.
Writes ``evaluation.json``, ``report.md`` and the figures beside the model.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from . import metrics as m
from .cli import ArgumentParser, path_arg, run_cli, staged_outputs, writable_folder
from .data import DATASETS, load_dataset, scale_images
from .errors import UserError
from .files import write_json, write_text
from .functional import cross_entropy, softmax
from .plots import plot_confidence, plot_confusion, plot_curves, plot_image_grid, plot_reliability
from .runs import CHECKPOINT, MODEL, held_by_a_run
from .saved import DATA_DIR, load_model

FIGURES = {
    "confusion": "confusion.png",
    "roc": "roc.png",
    "pr": "precision_recall.png",
    "reliability": "reliability.png",
    "confidence": "confidence.png",
    "mistakes": "confident_mistakes.png",
    "pairs": "confusion_pairs.png",
    "templates": "weights.png",
}


def evaluate_model(weight, bias, mean, std, images, labels) -> tuple[dict, dict]:
    """Every metric of the module docstring. weight (K, D), images uint8 (N, h, w) with h w = D, labels (N,)
    -> (results, curves)."""
    x = scale_images(images, mean, std, "float64")
    logits = x @ weight.astype(np.float64).T + bias
    probs = softmax(logits)
    y = labels.astype(np.int64)
    pred = probs.argmax(axis=1)
    confidence, correct = probs.max(axis=1), pred == y
    n_classes = len(weight)
    cm = m.confusion_matrix(y, pred, n_classes)
    scores = m.per_class_scores(cm)
    roc = {k: m.roc_curve(y == k, probs[:, k])[:2] for k in range(n_classes)}
    pr = {k: m.precision_recall_curve(y == k, probs[:, k])[1::-1] for k in range(n_classes)}
    aucs = {k: m.auc(*roc[k]) for k in range(n_classes)}
    aps = {k: m.average_precision(y == k, probs[:, k]) for k in range(n_classes)}
    cal = m.calibration(confidence, correct)
    mistakes = m.most_confident_mistakes(probs, y)
    results = {
        "n": len(y),
        "accuracy": float(correct.mean()),
        "loss": float(cross_entropy(logits, y)),
        "per_class": {name: values.tolist() for name, values in scores.items()},
        "macro": {name: float(scores[name].mean()) for name in ("precision", "recall", "f1")},
        "confusion_matrix": cm.tolist(),
        "roc_auc": [aucs[k] for k in range(n_classes)],
        "average_precision": [aps[k] for k in range(n_classes)],
        "ece": cal["ece"],
        "calibration": {key: np.asarray(cal[key]).tolist() for key in ("edges", "counts", "confidence", "accuracy")},
        "mean_confidence": {"correct": _mean(confidence[correct]), "wrong": _mean(confidence[~correct])},
        "top_confusions": [{"true": i, "predicted": j, "count": c} for i, j, c in m.top_confusions(cm)],
        "confident_mistakes": [
            {"index": int(i), "true": int(y[i]), "predicted": int(pred[i]), "confidence": float(confidence[i])}
            for i in mistakes
        ],
    }
    pair_means = {(i, j): images[(y == i) & (pred == j)].mean(axis=0) for i, j, _ in m.top_confusions(cm)}
    curves = {"roc": roc, "pr": pr, "calibration": cal, "confidence": confidence, "correct": correct,
              "pair_means": pair_means}  # fmt: skip
    return results, curves


def write_figures(results, curves, weight, images, out: Path) -> None:
    plot_confusion(np.array(results["confusion_matrix"]), out / FIGURES["confusion"])
    plot_curves(curves["roc"], dict(enumerate(results["roc_auc"])), out / FIGURES["roc"], "roc")
    plot_curves(curves["pr"], dict(enumerate(results["average_precision"])), out / FIGURES["pr"], "pr")
    plot_reliability(curves["calibration"], out / FIGURES["reliability"])
    plot_confidence(curves["confidence"], curves["correct"], out / FIGURES["confidence"])
    wrong = results["confident_mistakes"]
    plot_image_grid(
        images[[w["index"] for w in wrong]],
        [f"{w['true']} as {w['predicted']} ({_percent(w['confidence'])})" for w in wrong],
        out / FIGURES["mistakes"],
        "most confident mistakes: true as predicted (confidence)",
    )
    pairs = results["top_confusions"][:8]
    plot_image_grid(
        np.array([curves["pair_means"][(p["true"], p["predicted"])] for p in pairs]).reshape(-1, *images.shape[1:]),
        [f"{p['true']} as {p['predicted']} ({p['count']})" for p in pairs],
        out / FIGURES["pairs"],
        "average image of each frequent confusion",
    )
    plot_image_grid(weight.reshape(len(weight), *images.shape[1:]), [f"class {k}" for k in range(len(weight))],
                    out / FIGURES["templates"], "the learned weights as templates (red +, blue -)", cmap="RdBu_r",
                    cols=5)  # fmt: skip


def report(results: dict, source: str, title: str = "MNIST") -> str:
    """The markdown page: headline, per-class table, confusions, calibration, and the figures."""
    pc = results["per_class"]
    lines = [
        f"# Evaluation of `{source}`",
        "",
        f"On the {results['n']:,} {title} test images: accuracy **{results['accuracy']:.2%}**, mean cross-entropy "
        f"{results['loss']:.4f}, macro F1 {results['macro']['f1']:.4f}, expected calibration error "
        f"{results['ece']:.4f}. Mean confidence {_percent(results['mean_confidence']['correct'])} when right, "
        f"{_percent(results['mean_confidence']['wrong'])} when wrong.",
        "",
        "| class | precision | recall | F1 | support | ROC AUC | average precision |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for k in range(len(pc["f1"])):
        lines.append(
            f"| {k} | {pc['precision'][k]:.4f} | {pc['recall'][k]:.4f} | {pc['f1'][k]:.4f} | {pc['support'][k]} | "
            f"{results['roc_auc'][k]:.4f} | {results['average_precision'][k]:.4f} |"
        )
    lines += ["", "Most common confusions:", "", "| true | predicted as | count |", "| ---: | ---: | ---: |"]
    lines += [f"| {c['true']} | {c['predicted']} | {c['count']} |" for c in results["top_confusions"]]
    lines += [""] + [f"![{name}]({file})" for name, file in FIGURES.items()] + [""]
    return "\n".join(lines)


def _mean(values: np.ndarray) -> float | None:
    """The mean, or None for no values (a model that is never wrong, or never right)."""
    return float(values.mean()) if len(values) else None


def _percent(value: float | None) -> str:
    """A probability as a percentage to one decimal, "n/a" for None; never "100.0%" for one below 1 (a mistake
    made with 0.9997 is not a certain one): ">99.9%" instead, as the drawing page writes it too."""
    if value is None:
        return "n/a"
    return ">99.9%" if value < 1 and f"{value:.1%}" == "100.0%" else f"{value:.1%}"


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="python -m lr_from_scratch.evaluate", description=__doc__.splitlines()[0])
    parser.add_argument("model", type=path_arg, help="a run folder (of either package) or a model.npz")
    parser.add_argument(
        "--data-dir",
        type=path_arg,
        help="folder with the IDX files of the dataset the model was trained on (default: as for training)",
    )
    parser.add_argument("--out", type=path_arg, metavar="DIR", help="where to write (default: beside the model)")
    parser.add_argument("--no-progress", action="store_true")
    return parser


def _main(argv) -> int:
    args = build_parser().parse_args(argv)
    path = args.model
    if path.is_dir() and not (path / MODEL).exists():
        if held_by_a_run(path):
            raise UserError(f"no model at {path / MODEL} yet: the run there is still training; evaluate it once it "
                            "has finished")  # fmt: skip
        if (path / CHECKPOINT).exists():
            raise UserError(f"no model at {path / MODEL}: the run there is unfinished (it holds {CHECKPOINT}); "
                            f"finish it with the training command's --resume {path}, then evaluate it")  # fmt: skip
    saved = load_model(path)
    dataset = saved.config.get("dataset", "mnist")  # what the model was trained on
    if not isinstance(dataset, str) or dataset not in DATASETS:
        raise UserError(f"{path}: trained on an unknown dataset {dataset!r}; expected one of {', '.join(DATASETS)}")
    beside = path if path.is_dir() else path.parent
    out = writable_folder(args.out or beside, "--out" if args.out else "the default --out (beside the model)")
    trained_from = saved.config.get(DATA_DIR)  # the --data-dir of its training run, if one was given
    data_dir = args.data_dir or (Path(trained_from) if isinstance(trained_from, str) else None)
    data = load_dataset(dataset, data_dir, progress=not args.no_progress)
    expected = (data.n_classes, int(np.prod(data.test_images.shape[1:])))
    if saved.weight.shape != expected:
        raise UserError(
            f"{path}: weight has shape {saved.weight.shape}, expected {expected} for {DATASETS[dataset].title}"
        )
    results, curves = evaluate_model(
        saved.weight, saved.bias, saved.mean, saved.std, data.test_images, data.test_labels
    )
    with staged_outputs(out) as stage:
        write_figures(results, curves, saved.weight, data.test_images, stage)
        write_json(stage / "evaluation.json", results)
        write_text(stage / "report.md", report(results, str(path), DATASETS[dataset].title))
    top = results["top_confusions"]
    confusion = f"{top[0]['true']} as {top[0]['predicted']}" if top else "none, no mistakes"
    print(
        f"accuracy {results['accuracy']:.2%}, macro F1 {results['macro']['f1']:.4f}, ECE {results['ece']:.4f}; "
        f"most common confusion: {confusion}"
    )
    print(f"wrote {out}/: evaluation.json report.md {' '.join(FIGURES.values())}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_cli(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
