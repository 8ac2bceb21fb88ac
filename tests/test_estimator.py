"""The scikit-learn style estimator: same core as the command line, same protocol as scikit-learn."""

from __future__ import annotations

import dataclasses
import inspect
import json
import os

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.base import clone, is_classifier
from sklearn.exceptions import NotFittedError
from sklearn.feature_selection import RFE, SelectFromModel
from sklearn.model_selection import GridSearchCV, cross_val_predict, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from lr_from_scratch.backends import make_backend
from lr_from_scratch.config import TrainConfig
from lr_from_scratch.data import prepare, scale_images
from lr_from_scratch.errors import ConfigError, TrainingDiverged
from lr_from_scratch.estimator import SoftmaxRegressionClassifier
from lr_from_scratch.trainer import fit

from .conftest import run_python


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
    assert is_classifier(clf)
    with pytest.raises(TypeError, match="unexpected keyword argument 'learning_rate'"):
        SoftmaxRegressionClassifier(learning_rate=0.1)
    with pytest.raises(ValueError, match="Invalid parameter 'alpha'"):
        clf.set_params(alpha=1)


def test_the_parameters_are_the_training_options_with_their_defaults():
    signature = inspect.signature(SoftmaxRegressionClassifier).parameters
    not_here = ("normalize", "limit", "dataset")  # the command's: the estimator takes X and y as they are
    sklearn_names = {"seed": "random_state"}
    options = {sklearn_names.get(f.name, f.name): f.default for f in dataclasses.fields(TrainConfig)
               if f.name not in not_here}  # fmt: skip
    assert {name: p.default for name, p in signature.items()} == options


def test_random_state_is_the_seed_and_lets_bagging_vary_its_copies(small):
    """An integer is the command's seed (same weights); None draws one per fit; BaggingClassifier gives each
    copy its own random_state, so even on the same samples (no bootstrap) the copies differ, and together they
    beat one of them."""
    from sklearn.ensemble import BaggingClassifier

    x, y, x_test, y_test = small
    x, y = x[:600], y[:600]
    fits = [SoftmaxRegressionClassifier(epochs=1, random_state=state).fit(x, y).weight_ for state in (0, 0, 1)]
    np.testing.assert_array_equal(fits[0], fits[1])
    assert not np.array_equal(fits[0], fits[2])
    drawn = [SoftmaxRegressionClassifier(epochs=1, random_state=None).fit(x, y).weight_ for _ in range(2)]
    assert not np.array_equal(drawn[0], drawn[1])
    rng = np.random.RandomState(5)
    assert not np.array_equal(*(SoftmaxRegressionClassifier(epochs=1, random_state=rng).fit(x, y).weight_
                                for _ in range(2)))  # fmt: skip
    bag = BaggingClassifier(SoftmaxRegressionClassifier(epochs=1), n_estimators=3, bootstrap=False, random_state=0)
    bag.fit(x, y)
    states = [member.random_state for member in bag.estimators_]
    assert len(set(states)) == 3
    weights = [member.weight_ for member in bag.estimators_]
    assert not np.array_equal(weights[0], weights[1]) and not np.array_equal(weights[1], weights[2])
    one = SoftmaxRegressionClassifier(epochs=1).fit(x, y)  # what a bag of identical copies would score
    assert bag.score(x_test, y_test) > one.score(x_test, y_test)
    for bad in (-1, 0.5, "0", True):
        with pytest.raises(ConfigError, match=f"^random_state must be an integer >= 0, None or a numpy.random."
                           f"RandomState, got {bad!r}$"):  # fmt: skip
            SoftmaxRegressionClassifier(random_state=bad).fit(x, y)


def test_bad_inputs_are_clear_and_name_the_parameters(small):
    x, y, _, _ = small
    for backend in ("torch", "foo"):  # torch_ref's backend too, which the estimator cannot run
        expected = f"^backend must be one of numba, numpy, numba-naive, cuda, got '{backend}'$"
        with pytest.raises(ConfigError, match=expected):
            SoftmaxRegressionClassifier(backend=backend).fit(x, y)
    with pytest.raises(ConfigError, match="^lr must be a number > 0, such as 0.01, got -1$"):
        SoftmaxRegressionClassifier(lr=-1).fit(x, y)
    with pytest.raises(ConfigError, match="^epochs must be an integer, got '5'$"):
        SoftmaxRegressionClassifier(epochs="5").fit(x, y)
    with pytest.raises(ConfigError, match="^nesterov needs momentum > 0 and dampening 0"):
        SoftmaxRegressionClassifier(nesterov=True, momentum=0).fit(x, y)
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        SoftmaxRegressionClassifier().fit(x, y[:3])
    with pytest.raises(ValueError, match="Input X contains NaN"):
        SoftmaxRegressionClassifier().fit(np.full((4, 2), np.nan), [0, 1, 0, 1])
    with pytest.raises(ValueError, match="Unknown label type: continuous"):
        SoftmaxRegressionClassifier().fit(x[:10], np.linspace(0, 1, 10))
    with pytest.raises(ValueError, match="Input y contains NaN"):
        SoftmaxRegressionClassifier().fit(x[:3], [0.0, np.nan, 1.0])
    with pytest.raises(ValueError, match="^y has 1 class, expected at least 2 classes: give samples of two or more$"):
        SoftmaxRegressionClassifier().fit(x[:4], [1, 1, 1, 1])
    for unfitted in (
        lambda c: c.predict(x),
        lambda c: c.predict_log_proba(x),
        lambda c: c.coef_,
        lambda c: c.intercept_,
    ):
        with pytest.raises(NotFittedError, match="not fitted yet"):
            unfitted(SoftmaxRegressionClassifier())
    for dtype in (None, "f4"):  # a type or a value outside the choices: the message lists them
        with pytest.raises(ConfigError, match=f"^dtype must be one of float32, float64, got {dtype!r}$"):
            SoftmaxRegressionClassifier(dtype=dtype).fit(x, y)
    with pytest.raises(ConfigError, match="^backend must be one of numba, numpy, numba-naive, cuda, got None$"):
        SoftmaxRegressionClassifier(backend=None).fit(x, y)
    clf = SoftmaxRegressionClassifier(epochs=1).fit(x, y)
    with pytest.raises(ValueError, match="X has 783 features, but SoftmaxRegressionClassifier is expecting 784"):
        clf.predict(x[:, 1:])


def test_the_cuda_backend_without_a_gpu_is_refused_in_the_estimators_terms(small, monkeypatch):
    from lr_from_scratch.kernels import cuda as kernels

    monkeypatch.setattr(kernels, "available", lambda: False)  # as on a machine without a GPU
    x, y, _, _ = small
    clf = SoftmaxRegressionClassifier(backend="cuda")
    with pytest.raises(
        ConfigError, match="^backend='cuda': Numba sees no CUDA GPU here .*; use backend='numba', or"
    ) as e:
        clf.fit(x, y)
    assert "--" not in str(e.value) and not hasattr(clf, "classes_")


def test_scikit_learns_own_check_estimator_passes_in_full():
    """Every check, none skipped: in a process of its own with SciPy's array API switch on (read at import)
    and pandas installed (the check of non-array inputs needs it)."""
    code = (
        "import json; from sklearn.utils.estimator_checks import check_estimator; "
        "from lr_from_scratch.estimator import SoftmaxRegressionClassifier as C; "
        "print(json.dumps([[r['check_name'], r['status'], str(r['exception'])[:300]] "
        "for r in check_estimator(C(), on_fail=None)]))"
    )
    results = json.loads(run_python(code, {**os.environ, "SCIPY_ARRAY_API": "1"}).stdout)
    assert len(results) >= 50
    assert [r for r in results if r[1] != "passed"] == []


def test_inside_scikit_learns_tools(small):
    x, y, x_test, y_test = small
    raw = x * 0.3081 + 0.1307  # undo the scaling: the pipeline's StandardScaler does it again
    pipe = make_pipeline(StandardScaler(), SoftmaxRegressionClassifier(epochs=3))
    assert pipe.fit(raw, y).score(x_test * 0.3081 + 0.1307, y_test) > 0.8
    scores = cross_val_score(SoftmaxRegressionClassifier(epochs=2), x, y, cv=3)
    assert scores.shape == (3,) and scores.min() > 0.75
    search = GridSearchCV(SoftmaxRegressionClassifier(epochs=2), {"lr": [1e-4, 0.01]}, cv=2).fit(x, y)
    assert search.best_params_ == {"lr": 0.01} and search.best_estimator_.n_iter_ == 2


def test_log_probabilities_are_the_logs_of_the_probabilities_without_log_zero(small):
    x, y, x_test, _ = small
    clf = SoftmaxRegressionClassifier(epochs=2).fit(x, y)
    np.testing.assert_allclose(np.exp(clf.predict_log_proba(x_test)), clf.predict_proba(x_test), rtol=1e-5, atol=1e-7)
    far = x_test[:100] * 1e4  # logits of about 1e4: probabilities that underflow to 0, logs that stay finite
    assert (clf.predict_proba(far) == 0).any() and np.isfinite(clf.predict_log_proba(far)).all()
    logs = cross_val_predict(SoftmaxRegressionClassifier(epochs=1), x, y, cv=2, method="predict_log_proba")
    assert logs.shape == (2000, 10) and (logs <= 0).all()


def test_feature_selection_reads_the_weights_as_coef(mnist):
    """SelectFromModel and RFE rank features by ``coef_``, as for scikit-learn's own linear classifiers. A pixel
    that is 0 in every image has a zero gradient, so from the zeros init its weights stay 0: never selected."""
    x, y = mnist.train_images[:2000].reshape(2000, -1) / 255.0, mnist.train_labels[:2000]
    blank = (x == 0).all(axis=0)
    assert 0 < blank.sum() < 300
    clf = SoftmaxRegressionClassifier(epochs=2, init="zeros", dtype="float64").fit(x, y)
    assert clf.coef_ is clf.weight_ and clf.intercept_ is clf.bias_ and clf.coef_.shape == (10, 784)
    assert not clf.coef_[:, blank].any() and clf.coef_[:, ~blank].any()
    kept = SelectFromModel(clf, threshold="mean", prefit=True).get_support()
    assert 0 < kept.sum() < (~blank).sum() and not kept[blank].any()
    rfe = RFE(SoftmaxRegressionClassifier(epochs=1, init="zeros"), n_features_to_select=200, step=300).fit(x, y)
    assert not rfe.support_[blank].any()


def test_small_data_trains_with_the_defaults(small):
    x, y, _, _ = small
    clf = SoftmaxRegressionClassifier().fit(x[:5], y[:5])  # no batch of 64, and 10% of 5 samples is none
    assert clf.n_iter_ == 20 and all(row["val_loss"] is None for row in clf.history_)
    assert clf.score(x[:5], y[:5]) == 1.0
    clf = SoftmaxRegressionClassifier().fit(x[:30], y[:30])  # 27 to train on, 3 to validate
    assert all(row["val_loss"] is not None for row in clf.history_)


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_two_classes_give_one_decision_value_per_sample(small, backend):
    x, y, _, _ = small
    keep = (y == 3) | (y == 8)
    clf = SoftmaxRegressionClassifier(epochs=3, backend=backend).fit(x[keep], np.where(y[keep] == 3, "three", "eight"))
    scores, proba = clf.decision_function(x[keep][:100]), clf.predict_proba(x[keep][:100])
    assert scores.shape == (100,) and proba.shape == (100, 2) and clf.classes_.tolist() == ["eight", "three"]
    np.testing.assert_array_equal(clf.predict(x[keep][:100]), clf.classes_[(scores > 0).astype(int)])
    np.testing.assert_allclose(proba[:, 1], 1 / (1 + np.exp(-scores)), rtol=1e-5)  # a sigmoid of the logit gap


def test_more_classes_than_the_numba_lanes_say_what_to_use():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(400, 5)), np.arange(400) % 20
    with pytest.raises(ValueError, match="y has 20 classes; backend='numba' takes at most 16.*use backend='numpy'"):
        SoftmaxRegressionClassifier().fit(x, y)
    assert SoftmaxRegressionClassifier(epochs=2, backend="numpy").fit(x, y).predict_proba(x).shape == (400, 20)
    pieces = SoftmaxRegressionClassifier(backend="numpy").partial_fit(x, y, classes=np.arange(20))
    with pytest.raises(ValueError, match="^classes_ has 20 classes; backend='numba' takes at most 16.*'numpy'"):
        pieces.set_params(backend="numba").partial_fit(x, y)  # a later call, on another backend
    assert pieces.n_iter_ == 1


def test_more_features_than_the_numba_kernels_number_say_what_to_do():
    x = sp.random(40, 70_000, density=1e-3, format="csr", random_state=0)
    y = np.arange(40) % 2
    expected = "^X has 70000 features; backend='numba' takes at most 65535 .* or use backend='numpy', which makes X"
    for fitting in (lambda c: c.fit(x, y), lambda c: c.partial_fit(x, y, classes=[0, 1])):
        with pytest.raises(ValueError, match=expected):
            fitting(SoftmaxRegressionClassifier())


def test_numpy_dtypes_are_taken_as_their_names(small):
    x, y, _, _ = small
    named = SoftmaxRegressionClassifier(epochs=1, dtype="float64").fit(x[:300], y[:300])
    for dtype in (np.float64, np.dtype("float64")):
        clf = SoftmaxRegressionClassifier(epochs=1, dtype=dtype).fit(x[:300], y[:300])
        assert clf.get_params()["dtype"] is dtype  # scikit-learn's clone checks the parameter is kept as given
        np.testing.assert_array_equal(clf.coef_, named.coef_)


def test_a_diverging_fit_gives_the_estimators_advice_not_the_command_lines(small):
    """A ValueError, as scikit-learn's own estimators raise for a fit that overflows."""
    x, y, _, _ = small
    for fitting in (lambda c: c.fit(x, y), lambda c: c.partial_fit(x, y, classes=np.arange(10))):
        with pytest.raises(ValueError, match="became NaN or infinite in epoch 1 .* at lr 1e[+]38") as info:
            fitting(SoftmaxRegressionClassifier(lr=1e38, epochs=1))
        assert isinstance(info.value, TrainingDiverged)
        assert str(info.value).endswith("Try a lower lr, or X scaled to unit variance (StandardScaler)")
        assert "--" not in str(info.value)


def test_a_fit_that_fails_leaves_the_last_model_whole(small):
    x, y, _, _ = small
    fitted = SoftmaxRegressionClassifier(epochs=1).fit(x, y)
    before = fitted.predict(x[:50])
    failures = [
        (np.zeros_like(y), "1 class"),  # refused before training
        (y + 5, "NaN or infinite"),  # fails during training (lr below), after the labels were read
    ]
    for labels, expected in failures:
        with pytest.raises((ValueError, TrainingDiverged), match=expected):
            fitted.set_params(lr=1e38).fit(x[:, :20], labels)  # another width, too
        np.testing.assert_array_equal(fitted.classes_, np.arange(10))
        np.testing.assert_array_equal(fitted.predict(x[:50]), before)
    pieces = SoftmaxRegressionClassifier()
    with pytest.raises(ValueError, match="20 classes"):
        pieces.partial_fit(x, y, classes=np.arange(20))
    pieces.partial_fit(x, y, classes=np.arange(10))  # still a first call
    assert pieces.n_iter_ == 1


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_sparse_input_trains_like_dense(small, backend):
    x, y, _, _ = small
    pixels = x * 0.3081 + 0.1307  # zeros stay zeros: sparse
    dense = SoftmaxRegressionClassifier(epochs=2, backend=backend).fit(pixels, y)
    sparse = SoftmaxRegressionClassifier(epochs=2, backend=backend).fit(sp.csr_matrix(pixels), y)
    np.testing.assert_array_equal(sparse.weight_, dense.weight_)
    np.testing.assert_array_equal(sparse.predict(sp.csr_matrix(pixels[:50])), dense.predict(pixels[:50]))


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_partial_fit_calls_are_the_epochs_of_one_run(small, backend):
    """Three calls on the whole set take exactly the steps of three epochs of ``fit`` without a validation part:
    the same orders, rates and momentum buffers."""
    x, y, _, _ = small
    pieces = SoftmaxRegressionClassifier(backend=backend, momentum=0.9, lr_step=2)
    for _ in range(3):
        pieces.partial_fit(x, y, classes=np.arange(10))
    whole = SoftmaxRegressionClassifier(epochs=3, val_split=0, lr_step=2, backend=backend).fit(x, y)
    np.testing.assert_array_equal(pieces.weight_, whole.weight_)
    assert pieces.n_iter_ == 3 and [row["epoch"] for row in pieces.history_] == [1, 2, 3]
    for key in ("lr", "train_loss", "train_accuracy"):
        assert [row[key] for row in pieces.history_] == [row[key] for row in whole.history_], key
    with pytest.raises(ValueError, match="classes must be given to the first call"):
        SoftmaxRegressionClassifier().partial_fit(x, y)
    with pytest.raises(ValueError, match="not in classes"):
        SoftmaxRegressionClassifier().partial_fit(x, y, classes=np.arange(5))
    for classes in (5, [[0, 1]], [*range(10), np.nan]):
        with pytest.raises(ValueError, match="^classes must be a 1-D array of every label there will be, got"):
            SoftmaxRegressionClassifier().partial_fit(x, y, classes=classes)
    with pytest.raises(
        ValueError,
        match="^classes has 1 class, expected at least 2 classes: give every label there will be, of two or more$",
    ):
        SoftmaxRegressionClassifier().partial_fit(x[y == 3], y[y == 3], classes=[3])


def test_partial_fit_on_pieces_learns(small):
    x, y, x_test, y_test = small
    clf = SoftmaxRegressionClassifier()
    for _ in range(3):
        for piece in np.array_split(np.arange(len(y)), 4):
            clf.partial_fit(x[piece], y[piece], classes=np.arange(10))
    assert clf.score(x_test, y_test) > 0.8
