"""Evaluation over a whole set, in chunks so memory stays small."""

from __future__ import annotations

import numpy as np

from .functional import log_softmax


def evaluate(weight: np.ndarray, bias: np.ndarray, x: np.ndarray, y: np.ndarray, chunk: int = 8192):
    """Mean cross-entropy and accuracy (a fraction) of ``softmax(x W^T + b)`` on ``(x, y)``.

    weight : (K, D), bias : (K,), x : (N, D), y : (N,) -> ``(loss, accuracy)`` as floats.
    """
    loss_sum, correct = 0.0, 0
    for start in range(0, len(x), chunk):
        z = x[start : start + chunk] @ weight.T + bias
        yc = y[start : start + chunk]
        loss_sum -= float(log_softmax(z)[np.arange(len(yc)), yc].sum(dtype=np.float64))
        correct += int((z.argmax(axis=1) == yc).sum())
    return loss_sum / len(x), correct / len(x)


# ----------------------------------------------------------------------------------------------------------
# Classification metrics for the error analysis (python -m lr_from_scratch.evaluate). Each follows the
# definition scikit-learn uses, so the tests can cross-check them exactly.


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int = 10) -> np.ndarray:
    """``C[i, j]`` = number of samples of class ``i`` predicted as ``j``. (N,), (N,) -> (K, K) int64."""
    return np.bincount(y_true * n_classes + y_pred, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def per_class_scores(cm: np.ndarray) -> dict[str, np.ndarray]:
    r"""Precision :math:`C_{kk} / \sum_i C_{ik}`, recall :math:`C_{kk} / \sum_j C_{kj}`, their harmonic mean
    F1, and the support :math:`\sum_j C_{kj}`, per class (0 where undefined). (K, K) -> dict of (K,)."""
    tp = np.diag(cm).astype(np.float64)
    predicted, support = cm.sum(axis=0), cm.sum(axis=1)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    denominator = precision + recall
    f1 = np.divide(2 * precision * recall, denominator, out=np.zeros_like(tp), where=denominator > 0)
    return {"precision": precision, "recall": recall, "f1": f1, "support": support}


def _ranked(is_positive: np.ndarray, scores: np.ndarray):
    """True and false positives above each distinct threshold, scores descending. Returns (tps, fps, thresholds)."""
    order = np.argsort(-scores, kind="mergesort")
    scores, is_positive = scores[order], is_positive[order].astype(np.float64)
    last_of_each = np.r_[np.flatnonzero(np.diff(scores)), len(scores) - 1]  # ties share one threshold
    tps = np.cumsum(is_positive)[last_of_each]
    fps = 1 + last_of_each - tps
    return tps, fps, scores[last_of_each]


def roc_curve(is_positive: np.ndarray, scores: np.ndarray):
    """One-vs-rest ROC: ``(fpr, tpr, thresholds)``, from (0, 0) to (1, 1), one point per distinct score."""
    tps, fps, thresholds = _ranked(is_positive, scores)
    tpr = np.r_[0.0, tps / tps[-1]]
    fpr = np.r_[0.0, fps / fps[-1]]
    return fpr, tpr, np.r_[np.inf, thresholds]


def auc(x: np.ndarray, y: np.ndarray) -> float:
    """Area under a curve by the trapezoidal rule (x increasing)."""
    return float(np.sum(np.diff(x) * (y[1:] + y[:-1]) / 2))


def precision_recall_curve(is_positive: np.ndarray, scores: np.ndarray):
    """``(precision, recall, thresholds)`` at each distinct threshold, thresholds increasing, then the point
    (precision 1, recall 0) with no threshold, as scikit-learn returns them."""
    tps, fps, thresholds = _ranked(is_positive, scores)
    precision = tps / (tps + fps)
    recall = tps / tps[-1]
    return np.r_[precision[::-1], 1.0], np.r_[recall[::-1], 0.0], thresholds[::-1]


def average_precision(is_positive: np.ndarray, scores: np.ndarray) -> float:
    r"""Average precision :math:`\sum_n (R_n - R_{n-1}) P_n`, the precision at each threshold weighted by the
    recall it adds (no interpolation)."""
    precision, recall, _ = precision_recall_curve(is_positive, scores)
    return float(-np.sum(np.diff(recall) * precision[:-1]))


def calibration(confidence: np.ndarray, correct: np.ndarray, n_bins: int = 15) -> dict:
    r"""Reliability of the top-class confidence: ``n_bins`` equal-width bins over [0, 1].

    Per bin: its sample count, mean confidence and accuracy (NaN when empty). The expected calibration error
    :math:`\mathrm{ECE} = \sum_b \frac{n_b}{N} |\mathrm{acc}_b - \mathrm{conf}_b|` is how far, on average over
    samples, confidence sits from the accuracy it should announce.
    """
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, n_bins - 1)
    counts = np.bincount(which, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_confidence = np.bincount(which, weights=confidence, minlength=n_bins) / counts
        accuracy = np.bincount(which, weights=correct.astype(np.float64), minlength=n_bins) / counts
    filled = counts > 0
    ece = float(np.sum(counts[filled] / len(confidence) * np.abs(accuracy[filled] - mean_confidence[filled])))
    return {"edges": edges, "counts": counts, "confidence": mean_confidence, "accuracy": accuracy, "ece": ece}


def top_confusions(cm: np.ndarray, k: int = 10) -> list[tuple[int, int, int]]:
    """The ``k`` most frequent mistakes as ``(true class, predicted class, count)``, most frequent first."""
    off = cm.copy()
    np.fill_diagonal(off, 0)
    flat = np.argsort(-off, axis=None, kind="mergesort")[:k]
    pairs = [(int(i), int(j), int(off[i, j])) for i, j in zip(*np.unravel_index(flat, cm.shape), strict=True)]
    return [p for p in pairs if p[2] > 0]


def most_confident_mistakes(probs: np.ndarray, y_true: np.ndarray, k: int = 16) -> np.ndarray:
    """Indices of the ``k`` wrong predictions made with the highest confidence, most confident first."""
    pred = probs.argmax(axis=1)
    wrong = np.flatnonzero(pred != y_true)
    return wrong[np.argsort(-probs[wrong, pred[wrong]], kind="mergesort")[:k]]
