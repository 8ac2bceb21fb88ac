"""The CUDA kernels against the NumPy reference. On a machine without a GPU they run in Numba's CUDA simulator
(``NUMBA_ENABLE_CUDASIM=1``, which ``make test`` sets for this file alone): every CUDA thread a Python thread,
so the problems here are small. On a GPU the same tests run on it.

Tolerances as for the CPU kernels (``tests/test_kernels.py``): float64 to 1e-10, float32 to 1e-5 (a few units in
the last place of the momentum buffers, which reach a few units).
"""

from __future__ import annotations

import inspect
import json
import threading

import numpy as np
import pytest
from numba import config, cuda, float64

from lr_from_scratch.backends import NumpyBackend, make_backend
from lr_from_scratch.config import TrainConfig
from lr_from_scratch.data import batch_slices, prepare, scale_images
from lr_from_scratch.kernels.cuda_device import FULL_WARP, MAX_PIXELS, _warp_sum
from lr_from_scratch.kernels.simulator import BARRIER_SECONDS
from lr_from_scratch.metrics import evaluate
from lr_from_scratch.model import SoftmaxRegression
from lr_from_scratch.optim import SGD, momentum_buffer_key
from lr_from_scratch.trainer import fit

from .cuda_races import Accesses, shared_arrays, watch

pytestmark = pytest.mark.skipif(
    not cuda.is_available(), reason="no GPU and no simulator: make test runs this file with NUMBA_ENABLE_CUDASIM=1"
)
ATOL = {"float64": 1e-10, "float32": 1e-5}
OPTIONS = {
    "plain": dict(),
    "momentum": dict(momentum=0.9),
    "nesterov": dict(momentum=0.9, nesterov=True),
    "dampening+decay": dict(momentum=0.5, dampening=0.5, weight_decay=1e-3),
}
A, C = 1 / (255 * 0.3), -0.1 / 0.3  # inputs a p + c, as the normalisation folds in
KERNELS = ["dense", "sparse", "grid"]  # the training kernels


def garbage(dtype: np.dtype):
    """What a kernel that reads memory before writing it must not get away with: NaN for floats, every bit set for
    unsigned integers and the largest half of the range for signed ones (an index past any array's end)."""
    if dtype.kind == "f":
        return np.nan
    if dtype.kind == "b":
        return True
    return np.iinfo(dtype).max if dtype.kind == "u" else np.iinfo(dtype).max // 2


@pytest.fixture(autouse=True)
def memory_that_was_never_written_holds_garbage(monkeypatch):
    """On a GPU, memory holds whatever was there: the scratch arrays the host allocates (``cuda.device_array``)
    and a kernel's local and shared arrays. The simulator makes them with ``np.empty`` and ``np.zeros``, often all
    zeros, which would hide a kernel that reads before it writes (a sum not started from 0, a mask not cleared
    before its first step). Here they all start as :func:`garbage`."""

    def device_array(shape, dtype=np.float64, **kwargs):
        return cuda.to_device(np.full(shape, garbage(np.dtype(dtype)), dtype))

    monkeypatch.setattr(cuda, "device_array", device_array)
    if not config.ENABLE_CUDASIM:
        return
    from numba.cuda.simulator import kernelapi

    local_array = kernelapi.FakeCUDALocal.array

    def local_with_garbage(self, shape, dtype, alignment=None):
        array = local_array(self, shape, dtype, alignment)
        array[...] = garbage(array.dtype)
        return array

    garbage_array = shared_arrays(lambda shape, dtype, line: np.full(shape, garbage(dtype), dtype))
    monkeypatch.setattr(kernelapi.FakeCUDAShared, "array", garbage_array)
    monkeypatch.setattr(kernelapi.FakeCUDALocal, "array", local_with_garbage)


@pytest.fixture(autouse=True)
def several_blocks(request, monkeypatch):
    """Every test of the grid kernel runs it on several blocks: one warp of 32 threads a block, so even these small
    problems take several (a warp a sample). The simulator runs a grid's blocks one after the other, which a
    grid-wide barrier cannot survive, so there every block runs at once instead (3 of them), with real barriers,
    the block's and the grid's: work shared out by block or by grid, and a barrier some thread misses, show."""
    callspec = getattr(request.node, "callspec", None)
    if callspec is None or callspec.params.get("kernel") != "grid":
        return
    import lr_from_scratch.kernels.cuda as gpu

    monkeypatch.setattr(gpu, "THREADS", 32)
    if not config.ENABLE_CUDASIM:
        return
    from numba.cuda.simulator import kernel as simulated
    from numba.cuda.simulator import kernelapi

    monkeypatch.setattr(gpu, "co_resident_blocks", lambda kernel, args, threads: 3)
    monkeypatch.setattr(simulated, "BlockManager", all_blocks_at_once(simulated.BlockManager))
    monkeypatch.setattr(kernelapi.GridGroup, "sync", lambda self: threading.current_thread().grid.wait(BARRIER_SECONDS))


def all_blocks_at_once(block_manager):
    """The simulator's block manager (``block_manager``, :mod:`lr_from_scratch.kernels.simulator`'s: one block at a
    time), made to start the threads of every block together at the call for the first block, and to give the
    grid a barrier for its grid-wide barrier. (The blocks share the simulator's shared memory, which only the grid
    kernel, having none, can afford.)"""

    class AllBlocksAtOnce(block_manager):
        def run(self, grid_point, *args):
            if any(grid_point):
                return  # the first block's call ran them all
            threads = [t for block in np.ndindex(*self._grid_dim) for t in self.threads(block, args)]
            grid = threading.Barrier(len(threads))
            self.barriers.append(grid)
            for thread in threads:
                thread.grid = grid
            self.join(threads)

    return AllBlocksAtOnce


@pytest.fixture(scope="module")
def problem():
    """23 sparse uint8 "images" of 30 pixels, 4 classes: small enough for the simulator."""
    rng = np.random.default_rng(0)
    images = ((rng.random((23, 30)) < 0.3) * rng.integers(1, 256, (23, 30))).astype(np.uint8)
    return (
        images,
        rng.integers(0, 4, 23),
        rng.permutation(23),
        rng.uniform(-0.1, 0.1, (4, 30)),
        rng.uniform(-0.1, 0.1, 4),
    )


def layer_and_reference(problem, dtype, batch_size, kernel="auto", lr=0.05, scale=1.0, a=A, c=C, **options):
    """The steps of ``kernel`` over ``problem`` beside NumPy's: ``(layer, (loss, correct), model, sgd, (ref_loss,
    ref_correct))``. The inputs are ``a * images + c``; float images (features) go to the GPU in ``dtype``."""
    from lr_from_scratch.kernels.cuda import CudaLinear, DeviceImages

    images, labels, order, weight, bias = problem
    images = images.astype(dtype) if images.dtype.kind == "f" else images
    weight, bias = (weight * scale).astype(dtype), bias.astype(dtype)
    layer = CudaLinear(weight.copy(), bias.copy(), a, c, **options)
    layer.kernel = kernel
    batches = batch_slices(len(labels), batch_size)
    on_device = (DeviceImages.from_host(images), cuda.to_device(labels), cuda.to_device(order))
    loss, correct = layer.train_steps(*on_device, batches, lr)
    model = SoftmaxRegression(weight.copy(), bias.copy())
    sgd = SGD([model.weight, model.bias], lr=lr, **options)
    x = (images * a + c).astype(dtype)
    ref_loss, ref_correct = 0.0, 0
    for batch in batches:
        batch_loss, n_correct, dw, db = model.forward_backward(x[order[batch]], labels[order[batch]])
        sgd.step([dw, db])
        ref_loss, ref_correct = ref_loss + batch_loss * (batch.stop - batch.start), ref_correct + n_correct
    return layer, (loss, correct), model, sgd, (ref_loss, ref_correct)


def assert_matches_reference(result, dtype):
    """The kernel's weights, bias, momentum buffers and totals are NumPy's, within the dtype's tolerance."""
    layer, (loss, correct), model, sgd, (ref_loss, ref_correct) = result
    weight, bias = layer.params()
    assert weight.dtype == dtype
    np.testing.assert_allclose(weight, model.weight, rtol=0, atol=ATOL[dtype])
    np.testing.assert_allclose(bias, model.bias, rtol=0, atol=ATOL[dtype])
    if sgd.buffers[0] is not None:
        np.testing.assert_allclose(layer.buffers()[0], sgd.buffers[0], rtol=0, atol=ATOL[dtype])
    assert loss == pytest.approx(ref_loss, rel=1e-10 if dtype == "float64" else 1e-5)
    assert correct == ref_correct


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("batch_size", [1, 5])  # 23 = 4 x 5 + 3: the last batch is short
@pytest.mark.parametrize("option", OPTIONS)
@pytest.mark.parametrize("kernel", KERNELS)
def test_train_steps_match_numpy(problem, kernel, option, batch_size, dtype):
    assert_matches_reference(layer_and_reference(problem, dtype, batch_size, kernel, **OPTIONS[option]), dtype)


@pytest.mark.parametrize("kernel", KERNELS)
def test_extreme_logits_stay_finite_and_exact(problem, kernel):
    """Weights 2,000 times the usual: logits of order 1e4, through the max shift as on the CPU."""
    images, labels, *_ = problem
    layer, (loss, _), model, _, (ref_loss, _) = layer_and_reference(problem, "float64", 23, kernel, scale=2000)
    x = images * A + C
    assert np.abs(x @ (problem[3] * 2000).T).max() > 1e3
    assert np.isfinite(loss) and loss == pytest.approx(ref_loss, rel=1e-10)
    assert np.isfinite(layer.params()[0]).all()


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_evaluate_matches_numpy(problem, dtype):
    from lr_from_scratch.kernels.cuda import CudaLinear, DeviceImages

    images, labels, _, weight, bias = problem
    layer = CudaLinear(weight.astype(dtype), bias.astype(dtype), A, C)
    loss, accuracy, predictions = layer.evaluate(DeviceImages.from_host(images, sparse=False), cuda.to_device(labels))
    x = (images * A + C).astype(dtype)
    ref_loss, ref_accuracy = evaluate(weight.astype(dtype), bias.astype(dtype), x, labels)
    assert loss == pytest.approx(ref_loss, rel=1e-12 if dtype == "float64" else 1e-5)
    assert accuracy == ref_accuracy
    np.testing.assert_array_equal(predictions, SoftmaxRegression(weight, bias).predict(x))


@pytest.mark.parametrize("kernel", KERNELS)
def test_a_tiny_float64_run_ends_where_the_numpy_backend_ends(mnist, kernel):
    """End to end on MNIST, through the shared loop: two steps of 64 real images, Nesterov momentum."""
    config = TrainConfig(limit=128, epochs=1, val_split=0, dtype="float64", nesterov=True, backend="cuda")
    splits = prepare(mnist, config)
    splits.test = splits.train  # the simulator is slow: test on the 128 training images
    gpu = make_backend(config, splits)
    assert gpu.layer.kernel_for(gpu.data["train"][0], config.batch_size) == "sparse"  # what "auto" picks here
    gpu.layer.kernel = kernel
    fit(gpu, config, progress=False, log=None)
    numpy_config = TrainConfig(**{**config.to_dict(), "backend": "numpy"})
    reference = make_backend(numpy_config, splits)
    assert isinstance(reference, NumpyBackend)
    fit(reference, numpy_config, progress=False, log=None)
    for name in ("weight", "bias", momentum_buffer_key(0)):
        np.testing.assert_allclose(gpu.state()[name], reference.state()[name], rtol=0, atol=1e-9)
    x = scale_images(splits.test.images, splits.mean, splits.std, "float64")
    assert gpu.evaluate("test") == pytest.approx(evaluate(*gpu.params(), x, splits.test.labels), rel=1e-12)


def test_the_estimator_trains_on_the_gpu(problem):
    from lr_from_scratch.estimator import SoftmaxRegressionClassifier

    images, labels, *_ = problem
    x = images / 255.0
    gpu = SoftmaxRegressionClassifier(backend="cuda", epochs=2, val_split=0, dtype="float64").fit(x, labels)
    cpu = SoftmaxRegressionClassifier(backend="numpy", epochs=2, val_split=0, dtype="float64").fit(x, labels)
    np.testing.assert_allclose(gpu.weight_, cpu.weight_, rtol=0, atol=1e-10)


def test_each_kernel_runs_where_it_applies(problem):
    """ "auto": the sparse kernel up to its batch, the grid kernel beyond it, the dense one where neither can."""
    from lr_from_scratch.kernels.cuda import CudaLinear, DeviceImages
    from lr_from_scratch.kernels.cuda_device import MAX_BATCH, MAX_CLASSES, MAX_PIXELS

    images, *_ = problem
    with_rows, without = DeviceImages.from_host(images), DeviceImages.from_host(images, sparse=False)
    layer = CudaLinear(np.zeros((4, 30)), np.zeros(4), A, C)
    assert layer.kernel_for(with_rows, MAX_BATCH) == "sparse"
    assert layer.kernel_for(with_rows, MAX_BATCH + 1) == "grid"  # more samples than mask bits
    assert layer.kernel_for(without, 1) == "dense"  # no CSR rows
    many = CudaLinear(np.zeros((MAX_CLASSES + 1, 30)), np.zeros(MAX_CLASSES + 1), A, C)
    assert many.kernel_for(with_rows, 1) == "dense"  # more classes than a thread's accumulators
    wide = CudaLinear(np.zeros((4, MAX_PIXELS + 1)), np.zeros(4), A, C)
    wide_images = DeviceImages.from_host(np.ones((2, MAX_PIXELS + 1), np.uint8))
    assert wide.kernel_for(wide_images, 1) == "grid"  # more pixel groups than a lane's bits
    for kernel in ("dense", "sparse", "grid"):
        layer.kernel = kernel
        assert layer.kernel_for(with_rows, 1) == kernel
    layer.kernel = "sparse"
    with pytest.raises(ValueError, match="the sparse kernel cannot take batches of 65"):
        layer.kernel_for(with_rows, MAX_BATCH + 1)
    many.kernel = "grid"
    with pytest.raises(ValueError, match="the grid kernel cannot take batches of 1"):
        many.kernel_for(with_rows, 1)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("kernel", ["grid"])
def test_the_grid_kernel_sums_over_many_chunks(problem, monkeypatch, kernel, dtype):
    """Chunks of 4 samples: a batch of 23 is 6 chunks, the last one short, so the sums over chunks, the bias
    column and the totals all run over several, shared out over several blocks."""
    import lr_from_scratch.kernels.cuda_device as device

    monkeypatch.setattr(device, "CHUNK", 4)  # the launch passes it to the kernel
    assert_matches_reference(layer_and_reference(problem, dtype, 23, kernel, **OPTIONS["nesterov"]), dtype)


@pytest.fixture(scope="module")
def wide_problem():
    """70 samples of 40 features, 16 classes (the most a thread's accumulators hold), two of the samples blank,
    and the features as floats of both signs, as the scikit-learn estimator passes them."""
    rng = np.random.default_rng(1)
    x = (rng.random((70, 40)) < 0.3) * rng.normal(0, 1, (70, 40))
    x[[5, 40]] = 0
    return x, rng.integers(0, 16, 70), rng.permutation(70), rng.uniform(-0.1, 0.1, (16, 40)), rng.uniform(-0.1, 0.1, 16)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("batch_size", [64, 33])  # both mask words, bit 31, a short last batch above 32
@pytest.mark.parametrize("kernel", KERNELS)
def test_wide_batches_of_floats_over_several_warps_match_numpy(wide_problem, monkeypatch, kernel, batch_size, dtype):
    """Three warps a block (the simulator's default is one), so work shared out by warp runs across warps too."""
    import lr_from_scratch.kernels.cuda as gpu

    monkeypatch.setattr(gpu, "THREADS", 96)
    monkeypatch.setattr(gpu, "SPARSE_THREADS", 96)
    result = layer_and_reference(wide_problem, dtype, batch_size, kernel, a=1.0, c=0.0, **OPTIONS["dampening+decay"])
    assert_matches_reference(result, dtype)


@pytest.mark.parametrize("kernel", ["sparse", "grid"])
def test_images_with_more_pixels_than_a_warp_loads_at_once_match_numpy(kernel):
    """A warp reads LOADS_IN_FLIGHT pixels a lane, 32 lanes, at a time: images of more non-zero pixels than that
    take several rounds, the last one partial (and one image none at all)."""
    from lr_from_scratch.kernels.cuda_device import LOADS_IN_FLIGHT, WORD

    rng = np.random.default_rng(2)
    pixels = 2 * LOADS_IN_FLIGHT * WORD + 40
    images = ((rng.random((9, pixels)) < 0.8) * rng.integers(1, 256, (9, pixels))).astype(np.uint8)
    images[4] = 0
    counts = (images != 0).sum(axis=1)
    assert counts[counts > 0].min() > LOADS_IN_FLIGHT * WORD
    problem = (images, rng.integers(0, 3, 9), rng.permutation(9), rng.uniform(-0.1, 0.1, (3, pixels)), np.zeros(3))
    result = layer_and_reference(problem, "float64", 4, kernel, a=1 / 255, c=-0.5, **OPTIONS["nesterov"])
    assert_matches_reference(result, "float64")


@pytest.mark.parametrize("threads", [8, 40])
@pytest.mark.parametrize(("warp_kernel", "constant"), [("sparse", "SPARSE_THREADS"), ("grid", "THREADS")])
def test_the_kernels_that_sum_by_warps_refuse_blocks_that_are_not_whole_warps(problem, monkeypatch, warp_kernel,
                                                                              constant, threads):  # fmt: skip
    """Their warps add up their lanes' sums by shuffles, which need every lane of the warp."""
    import lr_from_scratch.kernels.cuda as gpu

    monkeypatch.setattr(gpu, constant, threads)
    message = f"the {warp_kernel} kernel runs on whole warps of 32 threads, not on {constant} = {threads}"
    with pytest.raises(ValueError, match=message):
        layer_and_reference(problem, "float64", 5, warp_kernel)


@cuda.jit
def _shuffles(lane_masks, exchanged, sums):
    """Lane ``l`` of warp ``w``: the value ``100 w + l`` exchanged with lane ``l ^ m`` for each ``m`` of
    ``lane_masks``, and the warp's sum of those values (``_warp_sum``)."""
    tid = cuda.threadIdx.x
    value = 100 * (tid // 32) + tid % 32
    for j in range(lane_masks.shape[0]):
        exchanged[j, tid] = cuda.shfl_xor_sync(FULL_WARP, value, lane_masks[j])
    sums[tid] = _warp_sum(float(value))


def test_a_shuffle_hands_each_lane_its_partners_value_and_a_warp_sum_is_the_same_in_every_lane():
    """The warp functions the sparse kernel sums with, on two warps: on a GPU its instructions, in the simulator
    :mod:`lr_from_scratch.kernels.simulator`'s stand-ins, which must mean the same."""
    lane_masks = np.array([1, 16, 31, 5])
    exchanged, sums = np.zeros((4, 64), np.int64), np.zeros(64)
    _shuffles[1, 64](lane_masks, exchanged, sums)
    lanes, warps = np.arange(64) % 32, np.arange(64) // 32
    for j, lane_mask in enumerate(lane_masks):
        np.testing.assert_array_equal(exchanged[j], 100 * warps + (lanes ^ lane_mask))
    np.testing.assert_array_equal(sums, np.where(warps == 0, sum(range(32)), 3200 + sum(range(32))))


@pytest.mark.skipif(not config.ENABLE_CUDASIM, reason="on a GPU a warp that never meets hangs")
def test_a_lane_that_misses_a_shuffle_fails_the_simulated_launch(monkeypatch):
    """In the simulator a shuffle is a barrier of the warp's threads: one that some lane never reaches fails the
    launch after BARRIER_SECONDS, rather than hanging it."""
    from lr_from_scratch.kernels import simulator

    @cuda.jit
    def lane_0_skips(out):
        if cuda.threadIdx.x > 0:
            out[cuda.threadIdx.x] = cuda.shfl_xor_sync(0xFFFFFFFF, 1, 1)

    monkeypatch.setattr(simulator, "BARRIER_SECONDS", 0.5)
    with pytest.raises(threading.BrokenBarrierError):
        lane_0_skips[1, 32](np.zeros(32))


@pytest.mark.skipif(not config.ENABLE_CUDASIM, reason="on a GPU what these do is undefined")
def test_the_simulated_warp_functions_refuse_what_a_gpu_leaves_undefined():
    """Lanes of one warp at different warp functions, and a shuffle of all 32 lanes in a warp of 16 (a block of
    48 threads), each fail the launch with one line."""

    @cuda.jit
    def mixed(out):
        if cuda.threadIdx.x == 0:
            cuda.syncwarp(0xFFFFFFFF)
        else:
            out[cuda.threadIdx.x] = cuda.shfl_xor_sync(0xFFFFFFFF, 1, 1)

    @cuda.jit
    def shuffle(out):
        out[cuda.threadIdx.x] = cuda.shfl_xor_sync(0xFFFFFFFF, 1, 1)

    with pytest.raises(RuntimeError, match="the lanes of a warp met at different warp functions"):
        mixed[1, 32](np.zeros(32))
    with pytest.raises(RuntimeError, match="shfl_xor_sync with mask 0xffffffff in a warp of 16 threads"):
        shuffle[1, 48](np.zeros(48))


def watched(monkeypatch):
    """:func:`tests.cuda_races.watch`, shared arrays full of :func:`garbage`."""
    return watch(monkeypatch, lambda shape, dtype: np.full(shape, garbage(dtype), dtype))


@cuda.jit
def _neighbours(out, fence):
    """Each thread writes its number to shared memory and reads its neighbour's: a race unless ``fence``, which
    puts a barrier between; then it reads a shared array nobody wrote."""
    tid = cuda.threadIdx.x
    mine = cuda.shared.array(32, float64)
    never_written = cuda.shared.array(32, float64)
    mine[tid] = tid
    if fence:
        cuda.syncthreads()
    out[tid] = mine[(tid + 1) % 32] + never_written[tid] * 0


@pytest.mark.skipif(not config.ENABLE_CUDASIM, reason="watches the simulator")
def test_the_race_check_finds_a_race_and_a_read_of_memory_never_written(monkeypatch):
    """The check the kernels must pass, on a kernel that fails it, and on the same with a barrier."""
    racy = watched(monkeypatch)
    _neighbours[1, 32](np.zeros(32), False)
    assert len(racy.races()) == 1
    fenced = watched(monkeypatch)
    _neighbours[1, 32](np.zeros(32), True)
    assert fenced.races() == set()
    assert len(fenced.read_before_written(set())) == 1  # never_written; mine is written before it is read


def test_the_race_check_orders_blocks_only_by_grid_barriers():
    """Entries ``(block, thread, grid barriers, block barriers, warp barriers, write, atomic)`` at one address:
    two blocks race unless a grid barrier lies between, whatever their block barriers; two lanes of one warp do
    not across a ``syncwarp``."""

    def races(*entries):
        accesses = Accesses()
        accesses.log[0] = list(entries)
        return accesses.races()

    write, read = ((0,), 3, 1, 2, 0, True, False), ((1,), 3, 1, 5, 0, False, False)
    assert races(write, read)  # other block, same grid phase: its block barriers order nothing
    assert not races(write, ((1,), 3, 2, 5, 0, False, False))  # after a grid barrier
    assert not races(((0,), 3, 1, 2, 0, True, False), ((0,), 4, 1, 2, 1, False, False))  # a syncwarp between
    assert races(((0,), 3, 1, 2, 0, True, False), ((0,), 40, 1, 2, 1, False, False))  # another warp's
    assert not races(((0,), 3, 1, 2, 0, True, True), ((1,), 3, 1, 2, 0, True, True))  # two atomics


@pytest.mark.skipif(not config.ENABLE_CUDASIM, reason="watches the simulator")
@pytest.mark.parametrize(
    ("kernel", "threads", "batch", "pixels", "classes"),
    [
        ("sparse", 96, 64, 70, 10),
        ("sparse", 64, 33, MAX_PIXELS, 4),
        ("dense", 64, 20, 40, 5),
        ("grid", 32, 20, 40, 5),
    ],
)
def test_no_two_threads_race_for_memory_and_nothing_is_read_before_it_is_written(monkeypatch, kernel, threads,
                                                                                  batch, pixels, classes):  # fmt: skip
    """Every kernel, its threads' every access to shared and global memory logged (a blank image, a short last
    batch, momentum; the grid kernel on 3 blocks): no address two threads touch in one phase, one of them
    writing, and no scratch read before it is written."""
    import lr_from_scratch.kernels.cuda as gpu

    monkeypatch.setattr(gpu, "THREADS", threads)  # for the grid kernel, as several_blocks sets it
    monkeypatch.setattr(gpu, "SPARSE_THREADS", threads)
    rng = np.random.default_rng(0)
    n = 2 * batch + 3
    images = ((rng.random((n, pixels)) < 0.3) * rng.integers(1, 256, (n, pixels))).astype(np.uint8)
    images[1] = 0
    layer = gpu.CudaLinear(rng.uniform(-0.1, 0.1, (classes, pixels)), rng.uniform(-0.1, 0.1, classes), A, C, 0.9,
                           0.1, 1e-3, True)  # fmt: skip
    layer.kernel = kernel
    starts = np.array([*range(0, n, batch), n])
    labels, order = cuda.to_device(rng.integers(0, classes, n)), cuda.to_device(rng.permutation(n))
    function, (blocks, *rest), args = layer.launch(gpu.DeviceImages.from_host(images), labels, order, starts, batch,
                                                   0.05)  # fmt: skip
    blocks = min(blocks, gpu.co_resident_blocks(function, args, rest[0]))
    accesses = watched(monkeypatch)
    names = list(inspect.signature(function.py_func).parameters)
    for name, arg in zip(names, args, strict=True):
        if hasattr(arg, "_ary"):
            accesses.name(arg._ary, name)
    function[(blocks, *rest)](*args)
    inputs = {"dense", "images", "indptr", "indices", "values", "labels", "order", "starts", "W", "b", "bufW", "bufb",
              "first"}  # fmt: skip
    assert accesses.races() == set()
    assert accesses.read_before_written(inputs) == set()


@pytest.mark.parametrize("kernel", KERNELS)
def test_a_run_gives_the_same_bits_every_time(problem, kernel):
    """Every sum in a fixed order: on a GPU, where threads race, two runs still agree bit for bit (the simulator
    runs its threads in turn, so there this checks only that nothing depends on leftover state)."""
    runs = [layer_and_reference(problem, "float32", 5, kernel, **OPTIONS["nesterov"])[:2] for _ in range(2)]
    (first, first_totals), (second, second_totals) = runs
    for mine, theirs in zip(first.params(), second.params(), strict=True):
        np.testing.assert_array_equal(mine, theirs)
    assert first_totals == second_totals


def test_without_the_device_runtime_batches_above_64_take_the_dense_kernel(mnist, monkeypatch, capsys):
    """The grid kernel's barrier needs CUDA's device runtime linked at launch. Where it cannot be (here: a launch
    that fails as a missing libcudadevrt.a would), training goes on with the dense kernel and says so once."""
    import lr_from_scratch.kernels.cuda as gpu
    import lr_from_scratch.kernels.cuda_device as device
    from lr_from_scratch.train import build_backend

    class Unlinkable:
        def __getitem__(self, launch_configuration):
            raise RuntimeError("libcudadevrt.a: no such file\nsearched in ...")

    monkeypatch.setattr(device, "train_steps_grid", Unlinkable())
    monkeypatch.setattr(gpu, "co_resident_blocks", lambda kernel, args, threads: 1)  # on a GPU: nothing to compile
    gpu.grid_unavailable.cache_clear()
    try:
        config_ = TrainConfig(limit=130, val_split=0, batch_size=65, backend="cuda")
        backend = build_backend(config_, prepare(mnist, config_), None)
        images = backend.data["train"][0]
        assert backend.layer.kernel_for(images, 65) == "dense" and backend.layer.kernel_for(images, 64) == "sparse"
        loss, correct = backend.run_steps(np.arange(130), batch_slices(130, 65), 0.01)
    finally:
        gpu.grid_unavailable.cache_clear()
    assert np.isfinite(loss) and 0 <= correct <= 130
    reason = "RuntimeError: libcudadevrt.a: no such file"
    assert backend.info["cuda_grid_unavailable"] == reason  # and so in the run's metrics.json
    assert capsys.readouterr().out.count(f"the CUDA grid kernel cannot run here ({reason})") == 1


@pytest.mark.skipif(config.ENABLE_CUDASIM, reason="a GPU-sized grid: the simulator would take hours")
def test_the_grid_kernel_on_a_gpu_sized_problem_ends_where_the_numpy_backend_ends(mnist):
    """Batches of 1024 MNIST images (4 chunks, a dozen blocks and more on a GPU), float64, Nesterov momentum."""
    config_ = TrainConfig(limit=4096, epochs=1, val_split=0, dtype="float64", nesterov=True, batch_size=1024,
                          backend="cuda")  # fmt: skip
    splits = prepare(mnist, config_)
    gpu = make_backend(config_, splits)
    assert gpu.layer.kernel_for(gpu.data["train"][0], config_.batch_size) == "grid"
    fit(gpu, config_, progress=False, log=None)
    numpy_config = TrainConfig(**{**config_.to_dict(), "backend": "numpy"})
    reference = make_backend(numpy_config, splits)
    fit(reference, numpy_config, progress=False, log=None)
    for name in ("weight", "bias", momentum_buffer_key(0)):
        np.testing.assert_allclose(gpu.state()[name], reference.state()[name], rtol=0, atol=1e-9)


def test_the_tuning_sweep_times_every_setting_and_says_which_fail(mnist, monkeypatch):
    """``python -m benchmarks.cuda_tune`` in small: each kernel's settings at each batch size it takes (the sparse
    kernel's held to batches of 4 here), a rate for each, why for the one that fails (no samples in a chunk), and
    the constants as they were after."""
    from benchmarks import cuda_tune
    from lr_from_scratch.kernels import cuda as gpu
    from lr_from_scratch.kernels import cuda_device

    monkeypatch.setattr(gpu.CudaLinear, "sparse_fits", lambda self, batch_size: batch_size <= 4)
    before = gpu.THREADS, gpu.SPARSE_THREADS, cuda_device.CHUNK
    settings = {"dense": [{"THREADS": 8}, {"THREADS": 16}], "sparse": [{"SPARSE_THREADS": 32}],
                "grid": [{"THREADS": 32, "CHUNK": 4}, {"THREADS": 32, "CHUNK": 0}]}  # fmt: skip
    rows = cuda_tune.tune(mnist, ["dense", "sparse", "grid"], [3, 9], 1, settings, limit=10)
    assert before == (gpu.THREADS, gpu.SPARSE_THREADS, cuda_device.CHUNK)
    expected = [("dense", 3, {"THREADS": 8}), ("dense", 3, {"THREADS": 16}), ("dense", 9, {"THREADS": 8}),
                ("dense", 9, {"THREADS": 16}), ("sparse", 3, {"SPARSE_THREADS": 32}),
                ("grid", 3, {"THREADS": 32, "CHUNK": 4}), ("grid", 3, {"THREADS": 32, "CHUNK": 0}),
                ("grid", 9, {"THREADS": 32, "CHUNK": 4}), ("grid", 9, {"THREADS": 32, "CHUNK": 0})]  # fmt: skip
    assert [(r["kernel"], r["batch_size"], r["setting"]) for r in rows] == expected
    for row in rows:
        if row["setting"].get("CHUNK") == 0:
            assert row["error"].startswith("ZeroDivisionError") and "samples_per_second" not in row
        else:
            assert row["samples_per_second"] > 0 and "error" not in row
    page = cuda_tune.markdown(rows, [3, 9])
    assert "| THREADS 32, CHUNK 0 | fails: ZeroDivisionError" in page
    assert page.count("**") == 2 * 5  # the best of each kernel's columns: dense 2, sparse 1, grid 2


def test_a_tuning_sweep_stopped_keeps_what_it_timed(mnist, monkeypatch):
    """A stop (Ctrl-C) after the warm-up round and one timed epoch: that setting has its rate, the other none."""
    from benchmarks import cuda_tune
    from benchmarks.impls import Bench

    epochs, epoch = [], Bench.epoch
    monkeypatch.setattr(Bench, "epoch", lambda self: epochs.append(1) or epoch(self))
    settings = {"dense": [{"THREADS": 8}, {"THREADS": 16}]}
    rows = cuda_tune.tune(mnist, ["dense"], [3], 2, settings, limit=10, stop=lambda: len(epochs) >= 3)
    assert len(epochs) == 3
    assert rows[0]["samples_per_second"] > 0 and "samples_per_second" not in rows[1] and "error" not in rows[1]
    assert "| THREADS 16 | - |" in cuda_tune.markdown(rows, [3])


def test_a_tuning_sweep_stopped_writes_a_page_marked_interrupted_beside_the_complete_one(tmp_path, monkeypatch):
    """``python -m benchmarks.cuda_tune`` stopped by a real SIGINT: what it timed goes to cuda_tune-interrupted.md
    and .json, marked, and a complete sweep's page already there is left alone."""
    import os
    import signal

    from benchmarks import cuda_tune

    def stopped_after_one(mnist, kernels, sizes, rounds, stop):
        os.kill(os.getpid(), signal.SIGINT)
        assert stop()
        return [{"kernel": "dense", "setting": {"THREADS": 16}, "batch_size": 64, "samples_per_second": 1e6},
                {"kernel": "dense", "setting": {"THREADS": 8}, "batch_size": 64}]  # fmt: skip

    monkeypatch.setattr(cuda_tune, "tune", stopped_after_one)
    monkeypatch.setattr(cuda_tune, "unavailable", lambda impl: None)  # the simulator is no GPU to time
    (tmp_path / "cuda_tune.md").write_text("a complete sweep")
    assert cuda_tune.main(["--kernels", "dense", "--batch-sizes", "64", "--out", str(tmp_path), "--no-progress"]) == 130
    assert (tmp_path / "cuda_tune.md").read_text() == "a complete sweep"
    page = (tmp_path / "cuda_tune-interrupted.md").read_text()
    assert "\n\n**Interrupted** before every setting was timed" in page and "| THREADS 8 | - |" in page
    assert len(json.loads((tmp_path / "cuda_tune-interrupted.json").read_text())) == 2


def test_training_says_the_cuda_kernels_compiled_or_that_the_simulator_needs_none(mnist, capsys):
    from lr_from_scratch.train import build_backend

    config_ = TrainConfig(limit=64, val_split=0, backend="cuda")
    build_backend(config_, prepare(mnist, config_), None)
    expected = "nothing to compile" if config.ENABLE_CUDASIM else "CUDA kernels compiled in"
    assert expected in capsys.readouterr().out
