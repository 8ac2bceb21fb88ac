"""The fused CPU kernels: many exact SGD steps per call on sparse uint8 images, and inference over a whole set.

What the data allow, and what the kernels do with it (the algebra is in ``docs/fast.md``):

- **Sparse uint8 rows.** About 81% of MNIST's pixels are 0, so every image is kept as the column indices and
  uint8 values of its non-zero pixels (:class:`~lr_from_scratch.data.sparse.SparseRows`). Forward and backward
  touch only those: about 150 of 784 columns per image.
- **Normalisation folded into the weights.** With :math:`x = a p + c` (:math:`a = 1 / (255 \\sigma)`,
  :math:`c = -\\mu / \\sigma`), the logits are :math:`z = a W p + (c W \\mathbf{1} + b)` and the weight
  gradient is :math:`a\\, G^\\top P + c\\, (\\partial L / \\partial b) \\mathbf{1}^\\top`. The first term is
  sparse; the second is one rank-one correction per step. No float copy of the images is ever made.
- **A lane-friendly layout.** Internally the weight is stored transposed, (784, 16), with the 10 classes
  padded to 16. One pixel's weights are then one 64-byte row that loads, multiplies and stores as a single
  vector. The public API still speaks ``nn.Linear``'s (10, 784).
- **Fusion.** One call runs many steps: gather, logits, softmax, loss, gradient, SGD update (PyTorch's rule,
  momentum, Nesterov, weight decay), in place, with no Python between steps.
- **Threads without races.** From :data:`PARALLEL_MIN_NONZEROS` non-zero inputs a step on, each step splits
  its batch into one contiguous block per thread, and each block accumulates into its *own* gradient buffer;
  then the weight rows are shared out, and each share is stepped by summing every block's buffer for those
  rows in a fixed order. One ``prange`` loop per call runs a worker per thread through every step, the workers
  claiming each phase's tasks rather than meeting at a barrier (:mod:`.tasks`). Below it, the same step runs
  on one thread (one block), where threads would cost more than they save.
- **Memory.** The images come in a random order, so the kernel prefetches the image :data:`PREFETCH_AHEAD`
  places ahead.

The building blocks (16-lane rows, the softmax, the SGD step) are in :mod:`.lanes`.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import njit, prange

from ..data.pipeline import batch_starts
from ..data.sparse import SparseRows
from .lanes import (
    bias_term,
    bias_term_from_sums,
    lanes,
    log_softmax_at,
    logits,
    prefetch_row,
    require_lanes,
    row_scatter,
    sgd_factors,
    softmax_lanes,
    step_bias,
    step_rows,
    sum_blocks,
)
from .llvm import CACHE, FASTMATH, LANES, compile_report, slp_vectoriser
from .tasks import claim, finish, wait_for

#: Steps with at least this many non-zero inputs (the batch size times the rows' mean count) split across
#: threads; smaller ones run on one, where the threads' fixed costs a step (fetching the other thread's partial
#: gradient, its weight rows) outweigh the work. About 60 MNIST images (150 non-zero pixels each): on the 2-core
#: development machine the crossing lies near batch 64 and moves with the machine's noise (two identical
#: one-thread runs at batch 48 once differed by 37%); ``python -m benchmarks.report`` shows ``numba`` beside
#: ``numba-1-thread``. Counted in non-zeros, not images: small dense tables stay on one thread at batch 64,
#: where two made the estimator's fit of scikit-learn's digits (64 features) over twice as slow.
PARALLEL_MIN_NONZEROS = 9000
#: While training on one image, the kernel asks the memory system for the image this many places ahead.
PREFETCH_AHEAD = 4


@njit(inline="always")
def in_order_sum(x):
    """``x[0] + x[1] + ...`` in that order. In a kernel compiled with ``parallel=True``, ``x.sum()`` becomes a
    reduction shared among the threads, whose order, and so whose last bits, change with their number."""
    total = x.dtype.type(0)
    for i in range(len(x)):
        total += x[i]
    return total


@njit(inline="always", fastmath=FASTMATH)
def _accumulate(indptr, indices, values, order, lo, hi, Wt, const, a, inv_batch, n_classes, labels, z, dWt, db):
    """Forward and backward for samples ``order[lo:hi]``: add their gradient into ``dWt``/``db`` (the
    ``a G^T P`` part and ``db``; the rank-one part comes after the reduction) and return (loss sum, correct)."""
    loss, correct = 0.0, 0
    if Wt.shape[1] != LANES or dWt.shape[1] != LANES:  # never true: tells LLVM the width
        return loss, correct
    for i in range(lo, hi):
        # The images come in a random order: without help, each one's first read waits for memory.
        if i + PREFETCH_AHEAD < len(order):
            prefetch_row(indptr, indices, values, labels, order[i + PREFETCH_AHEAD])
        row = order[i]
        label = labels[row]
        logits(indptr, indices, values, row, Wt, const, a, z)
        z_label = z[label]
        m, pred, s = softmax_lanes(z, n_classes)  # z <- e = exp(z - m)
        loss -= z_label - m - np.log(s)
        correct += pred == label
        # z <- a g, with g = (e / s - onehot(label)) / B (0 in the padded lanes) added into db
        scale = inv_batch / s
        for k in range(LANES):
            g = z[k] * scale - (inv_batch if k == label else 0.0)
            db[k] += g
            z[k] = a * g
        row_scatter(indptr, indices, values, row, dWt, lanes(z))
    return loss, correct


@njit(cache=CACHE)
def _shared(Wt, n_blocks, n_steps):
    """What a training call's workers share, zeroed: per block, a partial gradient ``dW`` (T, D, 16) and ``db``
    (T, 16), column sums (T, 16), loss and correct sums (T,); a claim counter per task (2 S T,): task 2 s T + t
    is step s's block t, + T its share of the rows; the count of finished tasks, on a cache line of its own.
    Allocated outside the kernel compiled with ``parallel=True``, where every ``np.zeros`` would become a
    threaded loop of its own, compiled for seconds and run with a fork-join."""
    return (np.zeros((n_blocks,) + Wt.shape, dtype=Wt.dtype), np.zeros((n_blocks, LANES), dtype=Wt.dtype),
            np.zeros((n_blocks, LANES), dtype=Wt.dtype), np.zeros(n_blocks), np.zeros(n_blocks, dtype=np.int64),
            np.zeros(2 * n_steps * n_blocks, dtype=np.int64), np.zeros(16, dtype=np.int64)[8:])  # fmt: skip


@njit(cache=CACHE, fastmath=FASTMATH)
def _work(worker, threaded, n_blocks, indptr, indices, values, labels, order, starts, Wt, b, bufW, bufb, a, c,
          lr, momentum, one_minus_dampening, weight_decay, nesterov, n_classes, first_step, dW_blocks, db_blocks,
          col_sum_blocks, loss_blocks, correct_blocks, claims, done):  # fmt: skip
    """Worker ``worker``'s way through every step of a training call (:func:`_compile_train`): claim, run, wait
    (:mod:`.tasks`). ``threaded``: a constant, for which the function is compiled twice; False, one block, whose
    gradient rows the step clears as it reads them.

    A function of its own, called from the loop over the workers: compiled inside the ``prange`` body, it took
    the threaded kernel's compilation from 17 s to 30 s. It is a global, not a variable of the kernels'
    closure: Numba keys a cached function to its closure's pickled contents, and a pickled kernel is new in
    every process, so the kernels would compile again in each.
    """
    numba.literally(threaded)
    if not threaded:  # constants LLVM can fold
        n_blocks = 1
    clear_in_step = not threaded
    n_steps, n_rows = len(starts) - 1, len(Wt)
    z = np.empty(LANES, dtype=Wt.dtype)
    const = np.empty(LANES, dtype=Wt.dtype)
    db = np.empty(LANES, dtype=Wt.dtype)
    inv_batch = np.empty(1, dtype=Wt.dtype)  # 1 / B in the weights' dtype
    for s in range(n_steps):
        lo, hi = starts[s], starts[s + 1]
        inv_batch[0] = 1.0 / (hi - lo)
        task = 2 * s * n_blocks
        wait_for(done, task)  # the previous step has finished: its weights and column sums are final
        if s == 0:
            bias_term(Wt, b, c, const)
        else:
            bias_term_from_sums(col_sum_blocks, b, c, const)
        for i in range(n_blocks):
            t = (worker + i) % n_blocks
            if claim(claims, task + t):
                if not clear_in_step:
                    dW_blocks[t] = 0.0
                db_blocks[t] = 0.0
                block_lo, block_hi = lo + (hi - lo) * t // n_blocks, lo + (hi - lo) * (t + 1) // n_blocks
                loss, correct = _accumulate(
                    indptr, indices, values, order, block_lo, block_hi, Wt, const, a, inv_batch[0], n_classes,
                    labels, z, dW_blocks[t], db_blocks[t],
                )  # fmt: skip
                loss_blocks[t] += loss
                correct_blocks[t] += correct
                finish(done)
        task += n_blocks
        wait_for(done, task)  # every block's gradient is in
        sum_blocks(db_blocks, db)
        factors = sgd_factors(first_step and s == 0, lr, momentum, one_minus_dampening, nesterov)
        for i in range(n_blocks):
            t = (worker + i) % n_blocks
            if claim(claims, task + t):
                rows_lo, rows_hi = n_rows * t // n_blocks, n_rows * (t + 1) // n_blocks
                step_rows(Wt, bufW, dW_blocks, c, db, factors, lr, weight_decay, rows_lo, rows_hi, clear_in_step,
                          col_sum_blocks[t])  # fmt: skip
                if t == 0:
                    step_bias(b, bufb, db, factors, lr, weight_decay)
                finish(done)


def _compile_train(parallel: bool):
    """The training kernel, written once and compiled twice: with ``prange`` (``parallel``) the workers run on
    threads, one each; with ``range`` one worker runs every step on one thread, with one block."""
    workers = prange if parallel else range

    def train(indptr, indices, values, labels, order, starts, Wt, b, bufW, bufb, first,
              a, c, lr, momentum, one_minus_dampening, weight_decay, nesterov, n_classes, n_blocks):  # fmt: skip
        """SGD steps over the batches ``order[starts[s]:starts[s+1]]`` (the arguments:
        :meth:`FoldedLinear.train_args`, then the number of blocks and workers, ignored by the serial kernel).
        Returns (loss sum, correct).

        Each step has two phases of ``n_blocks`` tasks (:mod:`.tasks`). First, task ``t`` runs forward and
        backward for block ``t``, a contiguous share of the batch, into that block's partial gradient. Then task
        ``t`` steps a share of the weight rows, summing every block's partial gradient for them in block order,
        so the result does not depend on which thread ran what. With one block (serial), the gradient rows are
        cleared as the step reads them; with several, each block is cleared before use by the task that fills
        it, most often on the core that filled it the step before (each worker asks for its own block first).
        """
        require_lanes(Wt)
        if not parallel:
            n_blocks = 1
        n_steps = len(starts) - 1
        dW_blocks, db_blocks, col_sum_blocks, loss_blocks, correct_blocks, claims, done = _shared(Wt, n_blocks, n_steps)
        first_step = first[0]  # the momentum buffers are still empty
        for worker in workers(n_blocks):
            # an int64 index: the threaded loop's own, unsigned, would compile `_work` a second time
            _work(np.int64(worker), parallel, n_blocks, indptr, indices, values, labels, order, starts, Wt, b,
                  bufW, bufb, a, c, lr, momentum, one_minus_dampening, weight_decay, nesterov, n_classes,
                  first_step, dW_blocks, db_blocks, col_sum_blocks, loss_blocks, correct_blocks, claims,
                  done)  # fmt: skip
        if n_steps > 0:
            first[0] = False
        return in_order_sum(loss_blocks), in_order_sum(correct_blocks)

    # Numba names its on-disk cache after the function: one name per compilation
    train.__name__ = train.__qualname__ = "_train_parallel" if parallel else "_train_serial"
    return njit(cache=CACHE, parallel=parallel, fastmath=FASTMATH)(train)


_train_serial, _train_parallel = _compile_train(parallel=False), _compile_train(parallel=True)


@njit(cache=CACHE, parallel=True, fastmath=FASTMATH)
def _evaluate(indptr, indices, values, labels, Wt, b, a, c, n_classes, predictions):
    """Loss sum and correct count over every row; writes each row's predicted class into ``predictions``
    (int64 (n,)). The other arguments are those of :meth:`FoldedLinear.train_args` of the same names.

    Each row's loss goes into its own slot and the sum comes after the parallel loop, in row order
    (:func:`in_order_sum`), so the result does not depend on the number of threads.
    """
    const = np.empty(LANES, dtype=Wt.dtype)
    bias_term(Wt, b, c, const)
    losses = np.empty(len(indptr) - 1)
    for row in prange(len(indptr) - 1):
        z = np.empty(LANES, dtype=Wt.dtype)
        logits(indptr, indices, values, row, Wt, const, a, z)
        log_p, predictions[row] = log_softmax_at(z, n_classes, labels[row])
        losses[row] = -log_p
    return in_order_sum(losses), (predictions == labels).sum()


class FoldedLinear:
    """A (K, D) linear layer and its SGD state, stored for the kernels, on inputs ``x = a * values + c``.

    ``Wt`` (D, 16) and ``b`` (16,) are zero beyond class K; ``bufW``, ``bufb`` are the momentum buffers and
    ``first`` says they are still empty. The SGD options are fixed here, as in ``optim.SGD``; the learning rate
    comes with each call. The methods speak ``nn.Linear``'s (K, D) layout.
    """

    def __init__(self, weight: np.ndarray, bias: np.ndarray, a: float, c: float, momentum: float = 0.0,
                 dampening: float = 0.0, weight_decay: float = 0.0, nesterov: bool = False):  # fmt: skip
        n_classes, n_features = weight.shape
        if n_classes > LANES:
            raise ValueError(f"{n_classes} classes, at most {LANES} supported")
        self.n_classes, self.dtype = n_classes, weight.dtype
        self.a, self.c = a, c
        self.momentum, self.dampening, self.weight_decay, self.nesterov = momentum, dampening, weight_decay, nesterov
        self.Wt = np.zeros((n_features, LANES), dtype=self.dtype)
        self.b = np.zeros(LANES, dtype=self.dtype)
        self.bufW, self.bufb = np.zeros_like(self.Wt), np.zeros_like(self.b)
        self.first = np.ones(1, dtype=np.bool_)
        self.set_params(weight, bias)

    def params(self) -> tuple[np.ndarray, np.ndarray]:
        """Copies of ``(weight (K, D), bias (K,))``."""
        return self.Wt[:, : self.n_classes].T.copy(), self.b[: self.n_classes].copy()

    def set_params(self, weight: np.ndarray, bias: np.ndarray) -> None:
        self.Wt[:, : self.n_classes] = weight.T
        self.b[: self.n_classes] = bias

    def buffers(self) -> tuple[np.ndarray, np.ndarray] | None:
        """The momentum buffers as ``(K, D)`` and ``(K,)``, or None before the first step."""
        if self.first[0]:
            return None
        return self.bufW[:, : self.n_classes].T.copy(), self.bufb[: self.n_classes].copy()

    def set_buffers(self, buffers: tuple[np.ndarray, np.ndarray] | None) -> None:
        self.bufW[:] = 0
        self.bufb[:] = 0
        self.first[0] = buffers is None
        if buffers is not None:
            self.bufW[:, : self.n_classes] = buffers[0].T
            self.bufb[: self.n_classes] = buffers[1]

    def train_args(self, rows: SparseRows, labels: np.ndarray, order: np.ndarray, starts: np.ndarray, lr: float):
        """The arguments of the training kernels, but for the last, the number of blocks (threads):

        - ``indptr`` uint64 (n + 1,), ``indices`` uint16 (nnz,), ``values`` uint8 or float (nnz,): the images
          (:class:`SparseRows`); ``labels`` int64 (n,) in ``[0, K)``;
        - ``order`` int64 (n,): the epoch's order; ``starts`` int64 (S + 1,): step ``s`` trains on
          ``order[starts[s]:starts[s+1]]``;
        - ``Wt`` (D, 16), ``b`` (16,), ``bufW`` (D, 16), ``bufb`` (16,) in the weights' dtype, updated in place;
          ``first`` bool (1,): the momentum buffers are still empty (cleared by the first step);
        - scalars in the weights' dtype: ``a``, ``c`` (inputs ``a * value + c``), ``lr``, ``momentum``,
          ``1 - dampening``, ``weight_decay``; then ``nesterov`` (bool) and ``n_classes`` K (int, at most 16).
        """
        t = self.dtype.type
        return (rows.indptr, rows.indices, rows.values, labels, order, starts, self.Wt, self.b, self.bufW, self.bufb,
                self.first, t(self.a), t(self.c), t(lr), t(self.momentum), t(1 - self.dampening),
                t(self.weight_decay), bool(self.nesterov), self.n_classes)  # fmt: skip

    def train_steps(self, rows: SparseRows, labels, order, batches: list[slice], lr: float) -> tuple[float, int]:
        """SGD steps on the batches ``order[s]`` for each slice ``s`` of ``batches`` (consecutive, in order).

        Returns (sum over samples of their loss, number predicted correctly before each step).
        """
        args = self.train_args(rows, labels, order, batch_starts(batches), lr)
        n_threads = numba.get_num_threads()
        step_nonzeros = (batches[0].stop - batches[0].start) * len(rows.values) / max(len(rows), 1)
        with slp_vectoriser():
            if n_threads > 1 and step_nonzeros >= PARALLEL_MIN_NONZEROS:
                loss, correct = _train_parallel(*args, n_threads)
            else:
                loss, correct = _train_serial(*args, 1)
        return float(loss), int(correct)

    def evaluate(self, rows: SparseRows, labels) -> tuple[float, float, np.ndarray]:
        """``(mean loss, accuracy, predictions)`` over every row."""
        predictions = np.empty(len(rows), dtype=np.int64)
        t = self.dtype.type
        with slp_vectoriser():
            loss, correct = _evaluate(rows.indptr, rows.indices, rows.values, labels, self.Wt, self.b, t(self.a),
                                      t(self.c), self.n_classes, predictions)  # fmt: skip
        return float(loss) / len(rows), int(correct) / len(rows), predictions


def warm_up(dtype: str | np.dtype, values_dtype: str | np.dtype = np.uint8) -> tuple[float, bool]:
    """Compile (or load from Numba's cache) every fused kernel for ``dtype`` on a tiny problem.

    Returns ``(seconds, compiled)``: ``compiled`` is False when everything came from the on-disk cache.
    """

    def run():
        rng = np.random.default_rng(0)
        x = (rng.random((8, 12)) < 0.5) * rng.integers(1, 255, (8, 12))
        rows = SparseRows.from_dense(x.astype(values_dtype))
        layer = FoldedLinear(np.zeros((3, 12), dtype=dtype), np.zeros(3, dtype=dtype), 0.5, -0.1, 0.9, 0, 1e-4, True)
        labels, order = rng.integers(0, 3, 8), np.arange(8)
        for batch in (2, 8):
            layer.train_steps(rows, labels, order, [slice(i, i + batch) for i in range(0, 8, batch)], 0.1)
        layer.evaluate(rows, labels)
        if numba.get_num_threads() > 1:  # the parallel path too, whatever PARALLEL_MIN_NONZEROS is
            with slp_vectoriser():
                _train_parallel(*layer.train_args(rows, labels, order, np.array([0, 8]), 0.1), 2)

    return compile_report((_train_serial, _train_parallel, _evaluate), run)
