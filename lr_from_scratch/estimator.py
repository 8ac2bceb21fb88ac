"""A scikit-learn style estimator over the same model, optimizer and training loop as the command line::

    clf = SoftmaxRegressionClassifier(epochs=5).fit(X_train, y_train)
    clf.score(X_test, y_test)

It takes features as they are (scale them yourself) and labels of any sortable kind; fitted attributes end
in ``_`` as in scikit-learn. scikit-learn is not needed: ``sklearn.base.clone`` and friends still work,
because the estimator speaks the same protocol (``get_params``, ``set_params``).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .backends import array_backend
from .config import SCRATCH_BACKENDS, TrainConfig
from .data.pipeline import split_for
from .functional import softmax
from .model import initial_params
from .trainer import fit

#: The estimator's parameters: every training option except the MNIST-specific ``normalize`` and ``limit``.
PARAMS = {f.name: f.default for f in dataclasses.fields(TrainConfig) if f.name not in ("normalize", "limit")}


class SoftmaxRegressionClassifier:
    """Multinomial logistic regression trained by mini-batch SGD (PyTorch's rule), early stopping included.

    Parameters are those of :class:`~lr_from_scratch.config.TrainConfig` (``epochs``, ``batch_size``, ``lr``,
    ``momentum``, ``dampening``, ``nesterov``, ``weight_decay``, ``lr_step``, ``lr_gamma``, ``patience``,
    ``val_split``, ``init``, ``seed``, ``dtype``, ``backend``), with the same defaults.

    Attributes
    ----------
    classes_ : (K,) array, the sorted labels seen in ``fit``
    weight_ : (K, D) array and ``bias_`` : (K,) array, the kept (best-validation) parameters
    n_features_in_ : int
    history_ : list of dict, one per epoch (as in ``history.csv``)
    best_epoch_, n_iter_ : int, the epoch whose weights were kept and the number of epochs run
    """

    def __init__(self, **params):
        unknown = sorted(set(params) - set(PARAMS))
        if unknown:
            raise TypeError(f"unknown parameter(s) {', '.join(unknown)}; expected some of {', '.join(PARAMS)}")
        for name, default in PARAMS.items():
            setattr(self, name, params.get(name, default))

    def get_params(self, deep: bool = True) -> dict:
        """The constructor parameters, as a dict."""
        return {name: getattr(self, name) for name in PARAMS}

    def set_params(self, **params) -> SoftmaxRegressionClassifier:
        """Set constructor parameters; unknown names are an error."""
        SoftmaxRegressionClassifier(**params)  # validates the names
        for name, value in params.items():
            setattr(self, name, value)
        return self

    def __repr__(self) -> str:
        changed = {k: v for k, v in self.get_params().items() if v != PARAMS[k]}
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in changed.items())})"

    def fit(self, X, y) -> SoftmaxRegressionClassifier:
        """Train on ``X`` (N, D) numeric and ``y`` (N,) labels; returns ``self``."""
        config = TrainConfig(**self.get_params(), normalize=False).validate()
        if config.backend not in SCRATCH_BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(SCRATCH_BACKENDS)}, got {config.backend!r}")
        X = _check_X(X, config.dtype)
        y = np.asarray(y)
        if y.ndim != 1 or len(y) != len(X):
            raise ValueError(f"y has shape {y.shape}, expected ({len(X)},) to match X")
        self.classes_, y_idx = np.unique(y, return_inverse=True)
        if len(self.classes_) < 2:
            raise ValueError(f"y has {len(self.classes_)} class, expected at least 2")
        train_idx, val_idx = split_for(len(X), config)
        weight, bias = initial_params(config, X.shape[1], len(self.classes_))
        val = (X[val_idx], y_idx[val_idx]) if len(val_idx) else None
        backend = array_backend(config, weight, bias, (X[train_idx], y_idx[train_idx]), val)
        state = fit(backend, config, progress=False, log=None)
        self.weight_, self.bias_ = state.best_weight, state.best_bias
        self.n_features_in_ = X.shape[1]
        self.history_, self.best_epoch_, self.n_iter_ = state.history, state.best_epoch, len(state.history)
        return self

    def decision_function(self, X) -> np.ndarray:
        """Logits ``X W^T + b``: (N, D) -> (N, K)."""
        if not hasattr(self, "weight_"):
            raise AttributeError(f"this {type(self).__name__} is not fitted yet: call fit(X, y) first")
        X = _check_X(X, self.weight_.dtype)
        if X.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {X.shape[1]} features, expected {self.n_features_in_} as in fit")
        return X @ self.weight_.T + self.bias_

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities, columns in the order of ``classes_``: (N, D) -> (N, K)."""
        return softmax(self.decision_function(X))

    def predict(self, X) -> np.ndarray:
        """Most probable label: (N, D) -> (N,)."""
        logits = self.decision_function(X)  # first: it says so when the estimator is not fitted
        return self.classes_[logits.argmax(axis=1)]

    def score(self, X, y) -> float:
        """Accuracy of :meth:`predict` on ``(X, y)``, a fraction."""
        return float(np.mean(self.predict(X) == np.asarray(y)))


def _check_X(X, dtype) -> np.ndarray:
    X = np.asarray(X)
    if X.ndim != 2 or X.shape[0] == 0:
        raise ValueError(f"X has shape {X.shape}, expected a non-empty 2-D array (n_samples, n_features)")
    if not (np.issubdtype(X.dtype, np.number) or X.dtype == bool):
        raise ValueError(f"X has dtype {X.dtype}, expected numbers")
    X = X.astype(dtype, copy=False)
    if not np.isfinite(X).all():
        raise ValueError("X contains NaN or infinity, expected finite numbers")
    return X
