"""A scikit-learn estimator over the same model, optimizer and training loop as the command line::

    clf = SoftmaxRegressionClassifier(epochs=5).fit(X_train, y_train)
    clf.score(X_test, y_test)

Built on scikit-learn (``pip install lr-from-scratch[sklearn]``): it passes scikit-learn's own
``check_estimator`` and works inside ``Pipeline``, ``GridSearchCV`` and ``cross_val_score``. It takes features
as they are (scale them yourself, say with ``StandardScaler``), dense or ``scipy.sparse`` CSR (the Numba kernels
train on the non-zero entries only; the other backends make ``X`` dense), and labels of any kind.
"""

from __future__ import annotations

import dataclasses
import functools
import numbers

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from .backends import array_backend, require_cuda
from .config import SCRATCH_BACKENDS, TrainConfig
from .data import batch_slices, train_val_split
from .data.sparse import MAX_COLUMNS
from .errors import ConfigError, TrainingDiverged
from .functional import log_softmax, softmax
from .kernels.llvm import LANES
from .model import initial_params
from .trainer import TrainState, end_epoch, fit, train_epoch


def _unchanged_on_error(method):
    """A fitting method that raises leaves the estimator as it was: the last model whole, and
    ``n_features_in_`` too (scikit-learn's validation sets it first)."""

    @functools.wraps(method)
    def unchanged_on_error(self, *args, **kwargs):
        before = dict(vars(self))
        try:
            return method(self, *args, **kwargs)
        except BaseException as exc:
            vars(self).clear()
            vars(self).update(before)
            if isinstance(exc, TrainingDiverged):  # its advice is the command line's (--lr); say it in our terms
                raise TrainingDiverged(f"{exc.happened}; the estimator is as it was before this call. Try a lower "
                                       "lr, or X scaled to unit variance (StandardScaler)") from None  # fmt: skip
            raise

    return unchanged_on_error


class SoftmaxRegressionClassifier(ClassifierMixin, BaseEstimator):
    """Multinomial logistic regression trained by mini-batch SGD (PyTorch's rule), early stopping included.

    The parameters are the training command's options (:class:`~lr_from_scratch.config.TrainConfig`), with
    the same defaults, but for ``seed``, which takes scikit-learn's name and meaning: ``random_state`` (an
    integer is the command's ``--seed``; None or a ``numpy.random.RandomState`` draws one at each fit, so that
    ``BaggingClassifier`` and the like can give each of their copies its own initial weights and batch order).
    On small data the batch is at most the training part, and a validation part that would be empty is skipped
    (so is early stopping).

    Attributes
    ----------
    classes_ : (K,) array, the sorted labels seen in ``fit`` (or given to the first ``partial_fit``)
    weight_ : (K, D) array and ``bias_`` : (K,) array, the kept (best-validation) parameters; ``coef_`` and
        ``intercept_`` are the same arrays under scikit-learn's names (``SelectFromModel`` and ``RFE`` read them)
    n_features_in_ : int, and ``feature_names_in_`` when ``X`` had column names
    history_ : list of dict, one per epoch (as in ``history.csv``; ``partial_fit`` adds one a call)
    best_epoch_, n_iter_ : int, the epoch whose weights were kept and the number of epochs run
    """

    def __init__(self, epochs=20, batch_size=64, lr=0.01, momentum=0.9, dampening=0.0, nesterov=False,
                 weight_decay=0.0, lr_step=10, lr_gamma=0.1, patience=10, val_split=0.1, init="torch",
                 random_state=0, dtype="float32", backend="numba"):  # fmt: skip
        self.epochs, self.batch_size, self.lr, self.momentum = epochs, batch_size, lr, momentum
        self.dampening, self.nesterov, self.weight_decay = dampening, nesterov, weight_decay
        self.lr_step, self.lr_gamma = lr_step, lr_gamma
        self.patience, self.val_split, self.init, self.random_state = patience, val_split, init, random_state
        self.dtype, self.backend = dtype, backend

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags

    @_unchanged_on_error
    def fit(self, X, y) -> SoftmaxRegressionClassifier:
        """Train on ``X`` (N, D) and labels ``y`` (N,); returns ``self``."""
        config = self._config()
        X, y = self._validate(X, y, config, reset=True)
        self.classes_, y_index = np.unique(y, return_inverse=True)
        _check_classes(self.classes_, config)
        train_idx, val_idx = train_val_split(len(y), config.val_split, config.seed)
        if len(val_idx) == 0 or len(train_idx) == 0:  # too few samples to hold some out
            train_idx, val_idx = np.arange(len(y)), val_idx[:0]
        config = dataclasses.replace(config, batch_size=min(config.batch_size, len(train_idx)))
        weight, bias = initial_params(config, X.shape[1], len(self.classes_))
        val = (X[val_idx], y_index[val_idx]) if len(val_idx) else None
        backend = array_backend(config, weight, bias, (X[train_idx], y_index[train_idx]), val)
        state = fit(backend, config, progress=False, log=None)
        self.weight_, self.bias_ = state.best_weight, state.best_bias
        self.history_, self.best_epoch_, self.n_iter_ = state.history, state.best_epoch, len(state.history)
        self._sgd_state = {"weight": self.weight_, "bias": self.bias_}  # partial_fit goes on from here
        return self

    @_unchanged_on_error
    def partial_fit(self, X, y, classes=None) -> SoftmaxRegressionClassifier:
        """One more epoch of SGD over ``(X, y)``, for data that comes in pieces; returns ``self``.

        The first call needs ``classes``, every label there will be. The SGD state (momentum buffers
        included) carries over from call to call, so consecutive calls are consecutive epochs of one run at
        the schedule's rate (epoch ``n_iter_``); there is no validation part and no early stopping. With the
        default ``lr_step=10`` the rate falls tenfold every ten calls: for a long stream, set ``lr_step=0``.
        """
        config = self._config()
        first = not hasattr(self, "classes_")
        X, y = self._validate(X, y, config, reset=first)
        if first:
            if classes is None:
                raise ValueError("classes must be given to the first call to partial_fit: every label there will be")
            classes = np.asarray(classes)
            if classes.ndim != 1 or (classes.dtype.kind in "fc" and np.isnan(classes).any()):
                raise ValueError(f"classes must be a 1-D array of every label there will be, got {classes!r}")
            self.classes_ = np.unique(classes)
            weight, bias = initial_params(config, X.shape[1], len(self.classes_))
            self._sgd_state = {"weight": weight, "bias": bias}
            self.history_, self.best_epoch_, self.n_iter_ = [], 0, 0
        elif classes is not None and not np.array_equal(np.unique(classes), self.classes_):
            raise ValueError(f"classes are {np.unique(classes)}, but were {self.classes_} in the first partial_fit")
        _check_classes(self.classes_, config, "classes" if first else "classes_")  # the backend may have changed
        unknown = np.setdiff1d(y, self.classes_)
        if len(unknown):
            raise ValueError(f"y has labels {unknown} that are not in classes {self.classes_}")
        y_index = np.searchsorted(self.classes_, y)
        config = dataclasses.replace(config, batch_size=min(config.batch_size, len(y)), val_split=0.0)
        weight, bias = self._sgd_state["weight"], self._sgd_state["bias"]
        backend = array_backend(config, weight.astype(config.dtype), bias.astype(config.dtype), (X, y_index))
        backend.load_state(self._sgd_state)
        state = TrainState(epoch=self.n_iter_)
        train_epoch(backend, config, state, batch_slices(len(y), config.batch_size))
        end_epoch(backend, config, state)  # the epoch's history row; with nothing held out, its weights are kept
        self._sgd_state = backend.state()
        self.weight_, self.bias_ = state.best_weight, state.best_bias
        self.history_ = [*self.history_, *state.history]
        self.n_iter_ = self.best_epoch_ = state.epoch
        return self

    @property
    def coef_(self) -> np.ndarray:
        """``weight_``, (K, D): one row per class, also with two classes (a softmax over two logits)."""
        check_is_fitted(self)
        return self.weight_

    @property
    def intercept_(self) -> np.ndarray:
        """``bias_``, (K,)."""
        check_is_fitted(self)
        return self.bias_

    def decision_function(self, X) -> np.ndarray:
        """Logits ``X W^T + b``: (N, D) -> (N, K); with two classes, (N,): the second logit minus the first,
        positive where ``classes_[1]`` is the more probable."""
        logits = self._logits(X)
        return logits[:, 1] - logits[:, 0] if len(self.classes_) == 2 else logits

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities, columns in the order of ``classes_``: (N, D) -> (N, K)."""
        return softmax(self._logits(X))

    def predict_log_proba(self, X) -> np.ndarray:
        """Log class probabilities through log-sum-exp (no ``log(0)``): (N, D) -> (N, K)."""
        return log_softmax(self._logits(X))

    def predict(self, X) -> np.ndarray:
        """Most probable label: (N, D) -> (N,)."""
        logits = self._logits(X)  # first: it says so when the estimator is not fitted
        return self.classes_[logits.argmax(axis=1)]

    # -- the steps every method shares -----------------------------------------------------------------------

    def _config(self) -> TrainConfig:
        params = self.get_params()
        if isinstance(self.dtype, np.dtype | type):  # np.float32 as well as "float32"
            params["dtype"] = np.dtype(self.dtype).name
        params["seed"] = _seed(params.pop("random_state"))
        config = TrainConfig(**params, normalize=False)  # no dataset: X and y are the data
        config.validate(flags=False, backends=SCRATCH_BACKENDS)
        if config.backend == "cuda":
            require_cuda(flags=False)
        return config

    def _validate(self, X, y, config: TrainConfig, reset: bool):
        """scikit-learn's checks of ``X`` and ``y``; ``X`` in the weights' dtype, as CSR rows for the Numba
        kernels (densified for the others)."""
        X, y = validate_data(self, X, y, accept_sparse="csr", dtype=config.dtype, reset=reset)
        check_classification_targets(y)
        if config.backend == "numba" and X.shape[1] > MAX_COLUMNS:
            raise ValueError(f"X has {X.shape[1]} features; backend='numba' takes at most {MAX_COLUMNS} (it numbers "
                             "them as uint16): select or hash them down first, or use backend='numpy', which makes "
                             "X dense")  # fmt: skip
        if sp.issparse(X) and config.backend != "numba":
            X = X.toarray()
        return X, y

    def _logits(self, X) -> np.ndarray:
        check_is_fitted(self)
        X = validate_data(self, X, accept_sparse="csr", dtype=self.weight_.dtype, reset=False)
        return np.asarray(X @ self.weight_.T) + self.bias_


def _seed(random_state) -> int:
    """The training seed for ``random_state``: an integer as it is; None or a ``RandomState`` draws one (None
    from NumPy's global generator, as scikit-learn does)."""
    if isinstance(random_state, numbers.Integral) and not isinstance(random_state, bool | np.bool_):
        if random_state >= 0:
            return int(random_state)
    elif random_state is None or isinstance(random_state, np.random.RandomState):
        return int(check_random_state(random_state).randint(np.iinfo(np.int32).max))
    raise ConfigError(f"random_state must be an integer >= 0, None or a numpy.random.RandomState, got {random_state!r}")


def _check_classes(classes: np.ndarray, config: TrainConfig, given: str = "y") -> None:
    """Refuse fewer than 2 classes, and more than the fused kernels' lanes on the Numba backend; ``given``: the
    argument the classes came from."""
    if len(classes) < 2:
        what = "samples of" if given == "y" else "every label there will be, of"
        raise ValueError(f"{given} has {len(classes)} class, expected at least 2 classes: give {what} two or more")
    if config.backend == "numba" and len(classes) > LANES:
        raise ValueError(
            f"{given} has {len(classes)} classes; backend='numba' takes at most {LANES} (one vector register "
            "of lanes): use backend='numpy' or 'numba-naive'"
        )
