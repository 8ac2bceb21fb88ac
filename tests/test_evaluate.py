"""Evaluation: every metric against scikit-learn, and ``python -m lr_from_scratch.evaluate`` end to end."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from sklearn import metrics as sk
from sklearn.calibration import calibration_curve

from lr_from_scratch import metrics as m
from lr_from_scratch.evaluate import FIGURES, main

from .conftest import assert_one_line_error, run_module


@pytest.fixture(scope="module")
def predictions():
    """2,000 noisy predictions of 10 classes, with tied scores (rounded logits) to exercise the thresholds."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 10, 2000)
    logits = rng.normal(size=(2000, 10))
    logits[np.arange(2000), y] += 2
    logits = np.round(logits, 1)
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return y, probs, probs.argmax(axis=1)


def test_confusion_matrix_and_per_class_scores(predictions):
    y, _, pred = predictions
    cm = m.confusion_matrix(y, pred)
    np.testing.assert_array_equal(cm, sk.confusion_matrix(y, pred))
    scores = m.per_class_scores(cm)
    for name, theirs in zip(
        ("precision", "recall", "f1", "support"), sk.precision_recall_fscore_support(y, pred), strict=True
    ):
        np.testing.assert_allclose(scores[name], theirs, rtol=1e-12, err_msg=name)


@pytest.mark.parametrize("k", range(10))
def test_roc_and_precision_recall_curves_per_class(predictions, k):
    y, probs, _ = predictions
    fpr, tpr, thresholds = m.roc_curve(y == k, probs[:, k])
    sk_fpr, sk_tpr, sk_thresholds = sk.roc_curve(y == k, probs[:, k], drop_intermediate=False)
    np.testing.assert_allclose(fpr, sk_fpr)
    np.testing.assert_allclose(tpr, sk_tpr)
    np.testing.assert_allclose(thresholds[1:], sk_thresholds[1:])
    assert m.auc(fpr, tpr) == pytest.approx(sk.roc_auc_score(y == k, probs[:, k]), abs=1e-12)
    precision, recall, pr_thresholds = m.precision_recall_curve(y == k, probs[:, k])
    sk_precision, sk_recall, sk_pr_thresholds = sk.precision_recall_curve(y == k, probs[:, k])
    np.testing.assert_allclose(precision, sk_precision)
    np.testing.assert_allclose(recall, sk_recall)
    np.testing.assert_allclose(pr_thresholds, sk_pr_thresholds)
    assert m.average_precision(y == k, probs[:, k]) == pytest.approx(
        sk.average_precision_score(y == k, probs[:, k]), abs=1e-12
    )


def test_calibration_bins_and_ece(predictions):
    y, probs, pred = predictions
    confidence, correct = probs.max(axis=1), pred == y
    cal = m.calibration(confidence, correct, n_bins=10)
    accuracy, mean_confidence = calibration_curve(correct, confidence, n_bins=10)
    filled = cal["counts"] > 0
    np.testing.assert_allclose(cal["accuracy"][filled], accuracy)
    np.testing.assert_allclose(cal["confidence"][filled], mean_confidence)
    assert cal["counts"].sum() == len(y)
    by_hand = sum(
        np.sum(sel) / len(y) * abs(correct[sel].mean() - confidence[sel].mean())
        for lo, hi in zip(cal["edges"][:-1], cal["edges"][1:], strict=True)
        if (sel := (confidence > lo) & (confidence <= hi)).any()
    )
    assert cal["ece"] == pytest.approx(by_hand, abs=1e-12)


def test_confusions_and_confident_mistakes(predictions):
    y, probs, pred = predictions
    cm = m.confusion_matrix(y, pred)
    top = m.top_confusions(cm, 5)
    off = cm - np.diag(np.diag(cm))
    assert [c for _, _, c in top] == sorted(off.ravel(), reverse=True)[:5]
    assert all(cm[i, j] == c and i != j for i, j, c in top)
    mistakes = m.most_confident_mistakes(probs, y, 7)
    assert (pred[mistakes] != y[mistakes]).all()
    wrong = np.flatnonzero(pred != y)
    assert probs[mistakes, pred[mistakes]].tolist() == sorted(probs[wrong, pred[wrong]], reverse=True)[:7]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A quick run from each package."""
    runs = {}
    for module in ("lr_from_scratch.train", "torch_ref.train"):
        out = tmp_path_factory.mktemp(module.split(".")[0])
        result = run_module(module, "--limit", "5000", "--epochs", "2", "--out", str(out), "--no-progress")
        assert result.returncode == 0, result.stderr
        runs[module] = out
    return runs


@pytest.mark.parametrize("module", ["lr_from_scratch.train", "torch_ref.train"])
def test_evaluate_a_run_of_either_package(trained, module, capsys):
    run_dir = trained[module]
    assert main([str(run_dir), "--no-progress"]) == 0
    assert "accuracy" in capsys.readouterr().out
    results = json.loads((run_dir / "evaluation.json").read_text())
    test_accuracy = json.loads((run_dir / "metrics.json").read_text())["test_accuracy"]
    assert results["accuracy"] == pytest.approx(test_accuracy, abs=1e-4)  # float64 here, training's dtype there
    assert sum(map(sum, results["confusion_matrix"])) == 10_000
    assert 0 <= results["ece"] < 0.1 and len(results["confident_mistakes"]) == 16
    for name in FIGURES.values():
        assert (run_dir / name).read_bytes()[:4] == b"\x89PNG", name
    report = (run_dir / "report.md").read_text()
    assert f"accuracy **{results['accuracy']:.2%}**" in report and "| 9 |" in report


def test_evaluate_a_bare_model_file_into_another_folder(trained, tmp_path):
    assert main([str(trained["lr_from_scratch.train"] / "model.npz"), "--out", str(tmp_path), "--no-progress"]) == 0
    assert (tmp_path / "evaluation.json").exists() and (tmp_path / "report.md").exists()


def test_a_folder_whose_name_is_not_utf8_is_evaluated_into_a_utf8_report(trained, tmp_path):
    """A path's undecodable bytes (Python keeps them as lone surrogates) once ended the report in a
    UnicodeEncodeError; the report names the folder with a backslash escape instead."""
    folder = Path(os.fsdecode(os.fsencode(tmp_path) + b"/bad\xffname"))
    shutil.copytree(trained["lr_from_scratch.train"], folder)
    assert main([str(folder), "--no-progress"]) == 0
    assert "bad\\udcffname" in (folder / "report.md").read_bytes().decode("utf-8")


def test_bad_models_are_one_line(tmp_path, capsys):
    (tmp_path / "empty_run").mkdir()
    (tmp_path / "unfinished_run").mkdir()
    (tmp_path / "unfinished_run" / "checkpoint.npz").write_bytes(b"")
    (tmp_path / "garbage.npz").write_bytes(b"not a zip file")
    np.savez(tmp_path / "no_bias.npz", weight=np.zeros((10, 784)))
    np.savez(tmp_path / "small.npz", weight=np.zeros((10, 100)), bias=np.zeros(10), mean=0.0, std=1.0)
    import torch

    torch.save(torch.nn.Linear(784, 10).state_dict(), tmp_path / "model.pt")  # what torch_ref writes beside model.npz
    cases = {
        tmp_path / "nowhere": "no model at",
        tmp_path / "empty_run": "expected a run folder holding model.npz",
        tmp_path / "unfinished_run": "unfinished (it holds checkpoint.npz); finish it with the training",
        tmp_path / "garbage.npz": "not a readable .npz file",
        tmp_path / "no_bias.npz": "missing bias, mean, std",
        tmp_path / "small.npz": "weight has shape (10, 100), expected (10, 784)",
        tmp_path / "model.pt": "a PyTorch file (torch.save), not a model.npz: give the run folder, or the model.npz",
    }
    for path, expected in cases.items():
        code = main([str(path), "--no-progress"])
        assert_one_line_error((code, capsys.readouterr().err), 1, expected)
    assert not (tmp_path / "empty_run" / "evaluation.json").exists()


def test_a_model_that_is_never_wrong_is_evaluated_too(tmp_path):
    """No mistakes: no confusions, no wrong confidence; the figures say "none" instead of failing."""
    from lr_from_scratch.evaluate import FIGURES, evaluate_model, report, write_figures

    images = np.zeros((6, 2, 3), np.uint8)
    labels = np.array([0, 1, 2, 0, 1, 2])
    images[np.arange(6), 0, labels] = 255  # class k lights pixel k
    weight = np.eye(3, 6) * 50
    results, curves = evaluate_model(weight, np.zeros(3), 0.0, 1.0, images, labels)
    assert results["accuracy"] == 1.0 and results["top_confusions"] == [] and results["confident_mistakes"] == []
    assert results["mean_confidence"]["wrong"] is None
    write_figures(results, curves, weight, images, tmp_path)
    assert all((tmp_path / name).read_bytes()[:4] == b"\x89PNG" for name in FIGURES.values())
    assert "n/a when wrong" in report(results, "perfect", "tiny")


def test_weights_near_the_float32_limit_are_drawn_without_an_overflow_warning(tmp_path):
    """Weights of +-3e38 (a run trained to the edge of float32): the weight figure scales them in float64, where
    matplotlib's own ``value - vmin`` in float32 overflowed and printed a RuntimeWarning to the user."""
    import warnings

    from lr_from_scratch.plots import plot_image_grid

    weight = np.full((2, 2, 3), 3e38, np.float32)
    weight[:, :, ::2] *= -1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        plot_image_grid(weight, ["class 0", "class 1"], tmp_path / "weights.png", "weights", cmap="RdBu_r")
    assert (tmp_path / "weights.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize(
    ("probability", "shown"), [(0.9997, ">99.9%"), (1.0, "100.0%"), (0.62, "62.0%"), (0.0004, "0.0%"), (None, "n/a")]
)
def test_a_confidence_below_1_is_never_shown_as_100_percent(probability, shown):
    """The most confident mistakes' captions said "(100%)" for 0.9979 to 0.9997: a mistake made with certainty."""
    from lr_from_scratch.evaluate import _percent

    assert _percent(probability) == shown
