"""The scikit-learn style estimator: same core as the command line, same protocol as scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone

from lr_from_scratch.backends import make_backend
from lr_from_scratch.config import TrainConfig
from lr_from_scratch.data import prepare, scale_images
from lr_from_scratch.errors import ConfigError
from lr_from_scratch.estimator import SoftmaxRegressionClassifier
from lr_from_scratch.trainer import fit


@pytest.fixture(scope="module")
def small(mnist):
    x = scale_images(mnist.train_images[:2000], 0.1307, 0.3081)
    x_test = scale_images(mnist.test_images[:1000], 0.1307, 0.3081)
    return x, mnist.train_labels[:2000], x_test, mnist.test_labels[:1000]


def test_fit_predict_score(small):
    x, y, x_test, y_test = small
    clf = SoftmaxRegressionClassifier(epochs=5, batch_size=32).fit(x, y)
    assert clf.weight_.shape == (10, 784) and clf.n_features_in_ == 784 and clf.n_iter_ == 5
    assert clf.classes_.tolist() == list(range(10))
    proba = clf.predict_proba(x_test)
    np.testing.assert_allclose(proba.sum(axis=1), 1, rtol=1e-5)
    assert (clf.predict(x_test) == proba.argmax(axis=1)).all()
    assert clf.score(x_test, y_test) > 0.8
    assert clf.score(x_test, y_test) == np.mean(clf.predict(x_test) == y_test)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_same_weights_as_the_training_command(small, mnist, backend):
    """Same core: the estimator on scaled floats and the command on MNIST's bytes reach the same weights
    (bit for bit with NumPy; with Numba the command folds the scaling into the weights, so float32 rounding
    differs by a few units in the last place)."""
    x, y, _, _ = small
    clf = SoftmaxRegressionClassifier(epochs=3, backend=backend).fit(x, y)
    config = TrainConfig(epochs=3, limit=2000, backend=backend)
    splits = prepare(mnist, config)
    state = fit(make_backend(config, splits), config, progress=False, log=None)
    tolerance = 0 if backend == "numpy" else 1e-6
    np.testing.assert_allclose(clf.weight_, state.best_weight, rtol=0, atol=tolerance)
    np.testing.assert_allclose(clf.bias_, state.best_bias, rtol=0, atol=tolerance)


def test_the_numba_backend_is_really_used(small):
    """The numba estimator equals the Numba backend on the same arrays bit for bit, and differs (by rounding)
    from the NumPy estimator, so a silently ignored ``backend`` would fail here."""
    from lr_from_scratch.backends import NumbaBackend
    from lr_from_scratch.data import SparseRows
    from lr_from_scratch.data.pipeline import split_for
    from lr_from_scratch.model import initial_params

    x, y, _, _ = small
    numba_clf = SoftmaxRegressionClassifier(epochs=2, backend="numba").fit(x, y)
    numpy_clf = SoftmaxRegressionClassifier(epochs=2, backend="numpy").fit(x, y)
    config = TrainConfig(epochs=2, normalize=False)
    train_idx, val_idx = split_for(len(x), config)
    y64 = y.astype(np.int64)
    backend = NumbaBackend(
        *initial_params(config, 784, 10), config, 1.0, 0.0,
        (SparseRows.from_dense(x[train_idx]), y64[train_idx]), (SparseRows.from_dense(x[val_idx]), y64[val_idx]),
    )  # fmt: skip
    state = fit(backend, config, progress=False, log=None)
    np.testing.assert_array_equal(numba_clf.weight_, state.best_weight)
    assert not np.array_equal(numba_clf.weight_, numpy_clf.weight_)
    np.testing.assert_allclose(numba_clf.weight_, numpy_clf.weight_, atol=1e-5)


def test_labels_of_any_kind(small):
    x, y, _, _ = small
    names = np.array(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"])
    clf = SoftmaxRegressionClassifier(epochs=2).fit(x, names[y])
    assert set(clf.predict(x[:50])) <= set(names)
    assert clf.score(x, names[y]) > 0.8


def test_params_protocol_and_clone():
    clf = SoftmaxRegressionClassifier(lr=0.1, nesterov=True)
    assert clf.get_params()["lr"] == 0.1 and clf.get_params()["epochs"] == TrainConfig().epochs
    assert clf.set_params(lr=0.2) is clf and clf.lr == 0.2
    twin = clone(clf)
    assert twin is not clf and twin.get_params() == clf.get_params()
    assert repr(clf) == "SoftmaxRegressionClassifier(lr=0.2, nesterov=True)"
    with pytest.raises(TypeError, match="unknown parameter"):
        SoftmaxRegressionClassifier(learning_rate=0.1)
    with pytest.raises(TypeError, match="unknown parameter"):
        clf.set_params(alpha=1)


def test_bad_inputs_are_clear(small):
    x, y, _, _ = small
    with pytest.raises(ValueError, match="backend must be one of numba, numpy, numba-naive, got 'torch'"):
        SoftmaxRegressionClassifier(backend="torch").fit(x, y)
    with pytest.raises(ConfigError, match="--lr must be a number > 0"):
        SoftmaxRegressionClassifier(lr=-1).fit(x, y)
    with pytest.raises(ValueError, match=r"y has shape \(3,\), expected \(2000,\)"):
        SoftmaxRegressionClassifier().fit(x, y[:3])
    with pytest.raises(ValueError, match="expected a non-empty 2-D array"):
        SoftmaxRegressionClassifier().fit(x[0], y[:1])
    with pytest.raises(ValueError, match="NaN or infinity"):
        SoftmaxRegressionClassifier().fit(np.full((4, 2), np.nan), [0, 1, 0, 1])
    with pytest.raises(ValueError, match="at least 2"):
        SoftmaxRegressionClassifier(val_split=0, batch_size=2).fit(x[:4], [1, 1, 1, 1])
    with pytest.raises(AttributeError, match="not fitted yet"):
        SoftmaxRegressionClassifier().predict(x)
    clf = SoftmaxRegressionClassifier(epochs=1).fit(x, y)
    with pytest.raises(ValueError, match="X has 783 features, expected 784"):
        clf.predict(x[:, 1:])
