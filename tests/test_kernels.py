"""Every Numba kernel against the NumPy reference (also run under NUMBA_DISABLE_JIT=1, so keep inputs small).

Tolerances: float64 agrees to 1e-10 (the fused kernels fold the normalisation into the weights and sum in
another order, so bits differ but nothing else); float32 agrees to 1e-5 on weights and momentum buffers after
up to 8 steps: the buffers reach a few units at batch 1, where one float32 step (ulp) is 2.4e-7.
"""

from __future__ import annotations

import contextlib

import numba
import numpy as np
import pytest

from lr_from_scratch.data import SparseRows, batch_slices, batch_starts, scale_images
from lr_from_scratch.kernels import fused, lanes, llvm, naive
from lr_from_scratch.kernels.fused import FoldedLinear
from lr_from_scratch.kernels.llvm import LANES
from lr_from_scratch.metrics import evaluate
from lr_from_scratch.model import SoftmaxRegression
from lr_from_scratch.optim import SGD

ATOL = {"float64": 1e-10, "float32": 1e-5}
MEAN, STD = 0.1307, 0.3081


@pytest.fixture(scope="module")
def real(mnist):
    """200 real training images (uint8, flattened) and their labels."""
    return mnist.train_images[:200].reshape(200, -1), mnist.train_labels[:200].astype(np.int64)


@pytest.fixture(scope="module")
def synthetic():
    """200 random images with MNIST's sparsity (about 80% zeros) and labels."""
    rng = np.random.default_rng(7)
    images = (rng.random((200, 784)) < 0.2) * rng.integers(1, 256, (200, 784))
    return images.astype(np.uint8), rng.integers(0, 10, 200)


def reference_steps(images, labels, order, batches, weight, bias, lr, normalize, dtype, **options):
    """The NumPy reference: scale, then SoftmaxRegression.forward_backward and SGD, batch by batch."""
    mean, std = (MEAN, STD) if normalize else (0.0, 1.0)
    x = scale_images(images, mean, std, dtype)
    model = SoftmaxRegression(weight.astype(dtype), bias.astype(dtype))
    sgd = SGD([model.weight, model.bias], lr=lr, **options)
    loss_sum, correct = 0.0, 0
    for batch in batches:
        idx = order[batch]
        loss, n_correct, dw, db = model.forward_backward(x[idx], labels[idx])
        sgd.step([dw, db])
        loss_sum += loss * len(idx)
        correct += n_correct
    return model, sgd, loss_sum, correct


def folded(weight, bias, normalize, dtype, **options):
    mean, std = (MEAN, STD) if normalize else (0.0, 1.0)
    return FoldedLinear(weight.astype(dtype), bias.astype(dtype), 1 / (255 * std), -mean / std, **options)


def initial(seed=0, scale=0.05):
    rng = np.random.default_rng(seed)
    return rng.uniform(-scale, scale, (10, 784)), rng.uniform(-scale, scale, 10)


OPTIONS = {
    "plain": dict(),
    "momentum": dict(momentum=0.9),
    "nesterov": dict(momentum=0.9, nesterov=True),
    "dampening+decay": dict(momentum=0.5, dampening=0.5, weight_decay=1e-3),
}


@contextlib.contextmanager
def numba_threads(n):
    """Numba held to ``n`` threads while the body runs."""
    saved = numba.get_num_threads()
    numba.set_num_threads(n)
    try:
        yield
    finally:
        numba.set_num_threads(saved)


def assert_close(name, mine, reference, atol):
    diff = float(np.max(np.abs(mine - reference)))
    print(f"{name:>18}: max |kernel - numpy| = {diff:.2e}")
    assert diff <= atol, f"{name}: max |kernel - numpy| = {diff:.2e}, allowed {atol:.0e}"


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("batch_size", [1, 63, 64])  # 200 = 3 x 64 + 8: the last batch is partial
@pytest.mark.parametrize("option", OPTIONS)
@pytest.mark.parametrize("data", ["real", "synthetic"])
def test_train_steps_match_numpy(request, data, option, batch_size, dtype):
    images, labels = request.getfixturevalue(data)
    order = np.random.default_rng(1).permutation(len(labels))
    batches = batch_slices(len(labels), batch_size)[:8]
    weight, bias = initial()
    normalize = data == "real"
    layer = folded(weight, bias, normalize, dtype, **OPTIONS[option])
    loss, correct = layer.train_steps(SparseRows.from_dense(images), labels, order, batches, 0.05)
    model, sgd, ref_loss, ref_correct = reference_steps(
        images, labels, order, batches, weight, bias, 0.05, normalize, dtype, **OPTIONS[option]
    )
    w, b = layer.params()
    assert w.dtype == dtype
    assert_close("weight", w, model.weight, ATOL[dtype])
    assert_close("bias", b, model.bias, ATOL[dtype])
    if sgd.buffers[0] is not None:
        assert_close("momentum buffer", layer.buffers()[0], sgd.buffers[0], ATOL[dtype])
    assert loss == pytest.approx(ref_loss, rel=1e-10 if dtype == "float64" else 1e-5)
    assert correct == ref_correct


@pytest.mark.parametrize(
    ("n_features", "density", "batch", "threaded"),
    [(784, 0.2, 64, True), (784, 0.2, 32, False), (30, 1.0, 64, False), (784, 1.0, 16, True)],
)
def test_a_step_takes_the_threads_by_its_non_zero_inputs_not_its_images(n_features, density, batch, threaded,
                                                                        monkeypatch):  # fmt: skip
    """MNIST-like rows (a fifth non-zero) thread from batch 64, not at 32; a batch of 64 rows of 30 dense
    features stays on one thread (two made small tables' fits over twice as slow), 16 dense rows of 784 do not."""
    rng = np.random.default_rng(0)
    images = (rng.random((256, n_features)) < density) * rng.integers(1, 256, (256, n_features))
    rows, labels = SparseRows.from_dense(images.astype(np.uint8)), rng.integers(0, 10, 256)
    called = []
    for name in ("_train_serial", "_train_parallel"):
        monkeypatch.setattr(fused, name, lambda *args, name=name: called.append(name) or (0.0, 0))
    monkeypatch.setattr(numba, "get_num_threads", lambda: 2)
    layer = FoldedLinear(np.zeros((10, n_features)), np.zeros(10), 1.0, 0.0)
    layer.train_steps(rows, labels, np.arange(256), batch_slices(256, batch), 0.1)
    assert called == ["_train_parallel" if threaded else "_train_serial"]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_parallel_path_matches_serial_and_is_deterministic(real, dtype, monkeypatch):
    images, labels = real
    rows, order = SparseRows.from_dense(images), np.arange(len(labels))
    batches = batch_slices(len(labels), 100)
    weight, bias = initial()
    serial = folded(weight, bias, True, dtype, momentum=0.9)
    monkeypatch.setattr(fused, "PARALLEL_MIN_NONZEROS", 10**9)
    serial.train_steps(rows, labels, order, batches, 0.1)
    monkeypatch.setattr(fused, "PARALLEL_MIN_NONZEROS", 1)
    monkeypatch.setattr(numba, "get_num_threads", lambda: 3)  # three blocks, whatever the machine
    runs = []
    for _ in range(2):
        layer = folded(weight, bias, True, dtype, momentum=0.9)
        layer.train_steps(rows, labels, order, batches, 0.1)
        runs.append(layer.params()[0])
    np.testing.assert_array_equal(runs[0], runs[1])  # a fixed reduction order: no scheduling noise
    assert_close("parallel vs serial", runs[0], serial.params()[0], ATOL[dtype])


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_more_workers_than_threads_finish_with_the_same_weights(real, dtype):
    """The threaded kernel's workers claim tasks rather than wait at a barrier, so a thread that runs several
    workers one after the other (here: four workers on one thread) finishes, with the bits of the same blocks
    run on every thread there is, and with the serial kernel's weights to rounding."""
    images, labels = real
    rows, order = SparseRows.from_dense(images), np.arange(len(labels))
    starts = batch_starts(batch_slices(len(labels), 64))
    weight, bias = initial()
    runs = {}
    for threads in (1, numba.config.NUMBA_NUM_THREADS):
        layer = folded(weight, bias, True, dtype, momentum=0.9, nesterov=True)
        with numba_threads(threads), fused.slp_vectoriser():
            runs[threads] = fused._train_parallel(*layer.train_args(rows, labels, order, starts, 0.1), 4)
        runs[threads] += (layer.params()[0],)
    serial = folded(weight, bias, True, dtype, momentum=0.9, nesterov=True)
    with fused.slp_vectoriser():
        loss, correct = fused._train_serial(*serial.train_args(rows, labels, order, starts, 0.1), 1)
    one, every = runs.values()
    assert one[:2] == every[:2]
    np.testing.assert_array_equal(one[2], every[2])
    assert_close("4 workers vs serial", one[2], serial.params()[0], ATOL[dtype])
    assert one[0] == pytest.approx(loss, rel=1e-12 if dtype == "float64" else 1e-5)
    assert one[1] == correct


def test_atomic_add_loses_no_update_between_threads():
    """Every worker adds 1 to the same counter 20,000 times: the total is exact, and each call returned the value
    before its own addition, so the values returned are 0 .. total-1, each once."""

    @numba.njit(parallel=True)
    def count(counter, seen, n_workers, n_adds):
        for worker in numba.prange(n_workers):
            for i in range(n_adds):
                seen[worker * n_adds + i] = llvm.atomic_add(counter, 0, 1)
        return llvm.atomic_load(counter, 0)

    n_workers, n_adds = 4, 20_000
    seen = np.empty(n_workers * n_adds, dtype=np.int64)
    assert count(np.zeros(1, dtype=np.int64), seen, n_workers, n_adds) == n_workers * n_adds
    np.testing.assert_array_equal(np.sort(seen), np.arange(n_workers * n_adds))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_evaluate_matches_numpy(real, dtype):
    images, labels = real
    weight, bias = initial(3, scale=0.2)
    layer = folded(weight, bias, True, dtype)
    loss, accuracy, predictions = layer.evaluate(SparseRows.from_dense(images), labels)
    x = scale_images(images, MEAN, STD, dtype)
    ref_loss, ref_accuracy = evaluate(weight.astype(dtype), bias.astype(dtype), x, labels)
    assert loss == pytest.approx(ref_loss, rel=1e-12 if dtype == "float64" else 1e-5)
    assert accuracy == ref_accuracy
    np.testing.assert_array_equal(predictions, SoftmaxRegression(weight, bias).predict(x))
    with numba_threads(1):
        one_thread = layer.evaluate(SparseRows.from_dense(images), labels)[0]
    assert one_thread == loss  # summed in row order, whatever the number of threads


def test_extreme_logits_stay_finite_and_exact(synthetic):
    images, labels = synthetic
    weight, bias = initial(4)
    weight *= 20_000  # logits of order +-1e4
    layer = folded(weight, bias, False, "float64")
    rows = SparseRows.from_dense(images)
    loss, _, _ = layer.evaluate(rows, labels)
    x = scale_images(images, 0.0, 1.0, "float64")
    assert np.abs(x @ weight.T).max() > 1e4
    ref_loss, _ = evaluate(weight, bias, x, labels)
    assert np.isfinite(loss) and loss == pytest.approx(ref_loss, rel=1e-12)
    step_loss, _ = layer.train_steps(rows, labels, np.arange(200), batch_slices(200, 50), 0.01)
    assert np.isfinite(step_loss) and np.isfinite(layer.params()[0]).all()


def test_nan_and_inf_survive_fastmath(synthetic):
    """The kernels' fast-math flags keep NaN and infinity, so the training loop can still see divergence."""
    images, labels = synthetic
    rows = SparseRows.from_dense(images)
    weight, bias = initial()
    weight[3, :] = np.nan
    with np.errstate(all="ignore"):  # under NUMBA_DISABLE_JIT the overflow is NumPy's, and it warns
        loss, _, _ = folded(weight, bias, False, "float32").evaluate(rows, labels)
        assert np.isnan(loss)
        weight, bias = initial()
        layer = folded(weight, bias, False, "float32")
        losses = [layer.train_steps(rows, labels, np.arange(200), batch_slices(200, 20), 1e38)[0] for _ in range(3)]
    assert not np.isfinite(losses[-1])


def test_exp_matches_numpy_and_keeps_nan():
    """The kernels' own exp: float64 accuracy where softmax needs it, 0 where exp underflows, NaN kept."""
    x = np.concatenate([np.linspace(-740.0, 0.0, 3001), [-1e300, -np.inf]])
    ours = np.array([lanes.exp_nonpositive(v) for v in x])
    exact = np.exp(x)
    normal = exact >= np.finfo(np.float64).tiny  # relative error grows with |x|, as ln 2 is rounded
    bound = 2e-16 * (1 + np.abs(x[normal])) * exact[normal]
    assert np.all(np.abs(ours[normal] - exact[normal]) <= bound)
    assert np.all(ours[~normal] < np.finfo(np.float64).tiny) and ours[-1] == ours[-2] == 0.0
    assert np.isnan(lanes.exp_nonpositive(np.nan))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_softmax_ignores_padded_lanes_and_breaks_ties_low(dtype):
    z = np.zeros(LANES, dtype=dtype)
    z[[2, 5]] = 3.0  # a tie for the largest logit among the 6 classes
    z[6:] = 50.0  # the padded lanes, whatever they hold, take no part
    expected = np.exp(z[:6] - 3.0)
    m, pred, s = lanes.softmax_lanes(z, 6)
    assert (m, pred) == (3.0, 2)
    assert s == pytest.approx(expected.sum(), rel=1e-7)
    np.testing.assert_allclose(z[:6], expected, rtol=1e-7)
    assert not z[6:].any()


def test_sparse_rows_keep_every_pixel(real):
    images, _ = real
    rows = SparseRows.from_dense(images)
    assert rows.indptr.dtype == np.uint64 and rows.indices.dtype == np.uint16 and rows.values.dtype == np.uint8
    dense = np.zeros_like(images)
    for i in range(len(rows)):
        span = slice(rows.indptr[i], rows.indptr[i + 1])
        dense[i, rows.indices[span]] = rows.values[span]
    np.testing.assert_array_equal(dense, images)


@pytest.mark.parametrize("dtype", ["uint8", "float32", "float64", "int64"])
def test_sparse_rows_of_any_values_are_numpys_non_zeros_in_order(dtype):
    """The compiled conversion keeps exactly NumPy's non-zeros, row by row in column order: negative values,
    NaN and the largest values too; -0.0 is a zero; a row of zeros is an empty row."""
    rng = np.random.default_rng(3)
    x = ((rng.random((37, 50)) < 0.3) * rng.normal(0, 100, (37, 50))).astype(dtype)
    x[4] = 0
    if dtype.startswith("float"):
        x[5, :3] = [np.nan, -0.0, np.finfo(dtype).max]
    rows = SparseRows.from_dense(x)
    mask = x != 0
    np.testing.assert_array_equal(np.diff(rows.indptr), mask.sum(axis=1))
    np.testing.assert_array_equal(rows.indices, np.nonzero(mask)[1])
    np.testing.assert_array_equal(rows.values, x[mask])  # NaN == NaN here
    assert rows.values.dtype == x.dtype and rows.indptr[4] == rows.indptr[5]


def test_signed_row_offsets_train_like_unsigned_ones(synthetic):
    images, labels = synthetic
    rows = SparseRows.from_dense(images)
    signed = SparseRows(rows.indptr.astype(np.int64), rows.indices, rows.values)
    assert signed.indptr.dtype == np.uint64
    results = []
    for r in (rows, signed):
        layer = folded(*initial(), True, "float64", momentum=0.9)
        loss_and_correct = layer.train_steps(r, labels, np.arange(200), batch_slices(200, 20), 0.1)
        results.append((loss_and_correct, *layer.params()))
    assert results[0][0] == results[1][0]
    np.testing.assert_array_equal(results[0][1], results[1][1])


def test_more_classes_than_lanes_is_refused():
    with pytest.raises(ValueError, match="17 classes, at most 16 supported"):
        FoldedLinear(np.zeros((17, 4)), np.zeros(17), 1.0, 0.0)


def test_training_kernels_refuse_rows_of_other_widths(synthetic):
    images, labels = synthetic
    layer = folded(*initial(), True, "float64", momentum=0.9)
    layer.Wt, layer.bufW = np.zeros((784, 8)), np.zeros((784, 8))
    args = layer.train_args(SparseRows.from_dense(images), labels, np.arange(200), np.array([0, 200]), 0.1)
    for kernel, n_blocks in ((fused._train_serial, 1), (fused._train_parallel, 2)):
        with pytest.raises(ValueError, match="weight rows of LANES"):
            kernel(*args, n_blocks)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("batch_size", [1, 64])
@pytest.mark.parametrize("option", OPTIONS)
def test_naive_kernel_matches_numpy(real, option, batch_size, dtype):
    """Kernel 1, the straight port: the same steps as the reference on the same scaled arrays."""
    images, labels = real
    order = np.random.default_rng(2).permutation(len(labels))
    batches = batch_slices(len(labels), batch_size)[:4]
    weight, bias = (p.astype(dtype) for p in initial())
    W, b, bufW, bufb, first = weight.copy(), bias.copy(), np.zeros_like(weight), np.zeros_like(bias), np.ones(1, bool)
    options = {"momentum": 0.0, "dampening": 0.0, "weight_decay": 0.0, "nesterov": False, **OPTIONS[option]}
    t = np.dtype(dtype).type
    x = scale_images(images, MEAN, STD, dtype)
    loss, correct = naive.train_steps(x, labels, order, batch_starts(batches), W, b, bufW, bufb, first, t(0.05),
                                      *(t(options[k]) for k in ("momentum", "dampening", "weight_decay")),
                                      options["nesterov"])  # fmt: skip
    model, sgd, ref_loss, ref_correct = reference_steps(
        images, labels, order, batches, weight, bias, 0.05, True, dtype, **OPTIONS[option]
    )
    assert_close("weight", W, model.weight, ATOL[dtype])
    assert_close("bias", b, model.bias, ATOL[dtype])
    if sgd.buffers[0] is not None:
        assert_close("momentum buffer", bufW, sgd.buffers[0], ATOL[dtype])
    assert loss == pytest.approx(ref_loss, rel=1e-10 if dtype == "float64" else 1e-5)
    assert correct == ref_correct
