"""Numba kernels for the hot loop: many fused SGD steps per call, and inference over a whole set.

What the data allow, and what the kernels do with it (the algebra is in ``docs/fast.md``):

- **Sparse uint8 rows.** About 81% of MNIST's pixels are 0, so every image is kept as the column indices and
  uint8 values of its non-zero pixels (:class:`SparseRows`, CSR). Forward and backward touch only those:
  about 150 of 784 columns per image.
- **Normalisation folded into the weights.** With :math:`x = a p + c` (:math:`a = 1 / (255 \\sigma)`,
  :math:`c = -\\mu / \\sigma`), the logits are :math:`z = a W p + (c W \\mathbf{1} + b)` and the weight
  gradient is :math:`a\\, G^\\top P + c\\, (\\partial L / \\partial b) \\mathbf{1}^\\top`. The first term is
  sparse; the second is one rank-one correction per step. No float copy of the images is ever made.
- **A lane-friendly layout.** Internally the weight is stored transposed, (784, 16), with the 10 classes
  padded to 16. One pixel's weights are then one 64-byte row that loads, multiplies and stores as a single
  vector. The public API still speaks ``nn.Linear``'s (10, 784).
- **Fusion.** One call runs many steps: gather, logits, softmax, loss, gradient, SGD update (PyTorch's rule,
  momentum, Nesterov, weight decay), in place, with no Python between steps.
- **A softmax in vector registers.** It runs over all 16 lanes with selects instead of branches, and with an
  exponential of its own (``2^n`` times a polynomial) instead of 10 calls into the maths library.
- **Threads without races.** Above :data:`PARALLEL_MIN_BATCH`, each step splits its batch into one
  contiguous block per thread. Each thread accumulates into its *own* gradient buffer; then each thread
  steps a share of the weight rows, summing the buffers for them in a fixed order. Below it, a serial path
  runs, where threads would cost more than they save.
- **Memory.** The images come in a random order, so the kernel prefetches the image 4 places ahead, and row
  offsets are unsigned, which spares every pixel read Numba's negative-index check.

All kernels share :data:`FASTMATH`: every fast-math flag except ``nnan`` and ``ninf``, so LLVM may reorder
and fuse arithmetic but may not assume away the NaN and infinity that the divergence check looks for.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass

import numba
import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

#: Fast-math flags for every kernel: all of them but ``nnan`` and ``ninf``, which would let LLVM delete
#: ``isfinite`` checks and break NaN propagation.
FASTMATH = {"nsz", "arcp", "contract", "afn", "reassoc"}
#: Classes are padded to this many lanes (one AVX-512 register of float32).
LANES = 16
#: Batches at least this large split across threads; smaller ones run serially. On the 2-core development
#: machine two threads win from about 48 images a step (docs/fast.md); ``python -m benchmarks.report`` shows
#: ``numba`` beside ``numba-1-thread`` on yours.
PARALLEL_MIN_BATCH = 64
#: While training on one image, the kernel asks the memory system for the image this many places ahead.
PREFETCH_AHEAD = 4
# Row offsets are uint64: an unsigned index needs no negative-index check, which saves about a third of the
# instructions of the pixel loops. Arithmetic on them stays unsigned through these constants.
_ONE, _TWO = np.uint64(1), np.uint64(2)
#: ``1 / k!`` for k = 12 down to 0: the Taylor polynomial of ``exp`` in Horner order.
_EXP_TAYLOR = tuple(1 / math.factorial(k) for k in range(12, -1, -1))
_LN2 = math.log(2.0)


@contextlib.contextmanager
def _vectoriser_settings():
    """While our kernels run (and so while they compile): LLVM's SLP vectoriser on.

    The per-pixel rows of 16 lanes are written as 16 scalars; the SLP vectoriser packs them into one or two
    vector registers (4x faster than scalar code here). Numba turns SLP off by default (numba#8852,
    miscompilations reported in 2023); it is on only while these kernels compile, and the test suite checks
    their every output against the NumPy reference. The setting is global in Numba, so it is restored as soon
    as the call returns. The loop vectoriser keeps its default (on) and handles the long flat loops.
    """
    saved = numba.config.SLP_VECTORIZE
    numba.config.SLP_VECTORIZE = 1
    try:
        yield
    finally:
        numba.config.SLP_VECTORIZE = saved


@dataclass(frozen=True)
class SparseRows:
    """Images as compressed sparse rows: row ``i``'s non-zero pixels are
    ``indices[indptr[i]:indptr[i+1]]`` (column numbers, uint16) with values ``values[...]`` (uint8 or float).
    """

    indptr: np.ndarray  # uint64 (n + 1,)
    indices: np.ndarray  # uint16 (nnz,)
    values: np.ndarray  # uint8 or float (nnz,)
    n_features: int

    def __post_init__(self):
        # The kernels' pixel loops are written for unsigned offsets (see _ONE, _TWO): take any integer offsets.
        object.__setattr__(self, "indptr", np.asarray(self.indptr, dtype=np.uint64))

    @classmethod
    def from_dense(cls, x: np.ndarray) -> SparseRows:
        """CSR of a dense (n, D) array; zeros are dropped, the other values are kept as they are."""
        x = np.ascontiguousarray(x.reshape(len(x), -1))
        if x.shape[1] > np.iinfo(np.uint16).max:
            raise ValueError(f"{x.shape[1]} features, at most {np.iinfo(np.uint16).max} supported")
        mask = x != 0
        indptr = np.zeros(len(x) + 1, dtype=np.uint64)
        np.cumsum(mask.sum(axis=1), out=indptr[1:])
        return cls(indptr, np.nonzero(mask)[1].astype(np.uint16), x[mask], x.shape[1])

    def __len__(self) -> int:
        return len(self.indptr) - 1


if numba.config.DISABLE_JIT:

    def _prefetch(array, index):
        """Plain Python (``NUMBA_DISABLE_JIT=1``): there is nothing to prefetch."""

    def _pow2(n):
        """Plain Python (``NUMBA_DISABLE_JIT=1``): ``2^n``, and 0 below the normal range, as compiled."""
        return 0.0 if n < -1022 else 2.0**n

else:

    @intrinsic
    def _prefetch(typingctx, array, index):
        """Ask the memory system for the cache line of ``array[index]`` (LLVM's ``llvm.prefetch``, a hint that
        never faults and never waits), so that it is in cache by the time the kernel reads it."""

        def codegen(context, builder, signature, args):
            array_type = signature.args[0]
            struct = context.make_array(array_type)(context, builder, args[0])
            address = cgutils.get_item_pointer(context, builder, array_type, struct, [args[1]], wraparound=False)
            byte_pointer = ir.IntType(8).as_pointer()
            i32 = ir.IntType(32)
            fn = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(ir.VoidType(), [byte_pointer, i32, i32, i32]), "llvm.prefetch.p0"
            )
            # read (0), keep in every cache level (3), data not instructions (1)
            builder.call(fn, [builder.bitcast(address, byte_pointer), i32(0), i32(3), i32(1)])
            return context.get_dummy_value()

        return types.void(array, index), codegen

    @intrinsic
    def _pow2(typingctx, n):
        """``2^n`` for an integral float64 ``n`` up to 1023, made from its bits: the biased exponent
        ``n + 1023`` shifted into place. 0 for ``n < -1022`` (no subnormals). Each operation has a vector
        instruction, so a loop over lanes stays vectorised."""
        if n != types.float64:
            return None

        def codegen(context, builder, signature, args):
            i64 = ir.IntType(64)
            exponent = builder.fptosi(args[0], i64)
            bits = builder.shl(builder.add(exponent, i64(1023)), i64(52))
            value = builder.bitcast(bits, ir.DoubleType())
            return builder.select(builder.icmp_signed("<", exponent, i64(-1022)), ir.DoubleType()(0.0), value)

        return types.float64(n), codegen


# ----------------------------------------------------------------------------------------------------------
# Building blocks (inlined into the kernels below). Two loop shapes, each written for the LLVM vectoriser that
# handles it: per-pixel rows of 16 lanes held in 16 scalars (a register block, packed by the SLP vectoriser),
# and long flat loops over whole arrays (the loop vectoriser).


@njit(inline="always")
def _lanes(x):
    """The 16 values of ``x`` as a tuple: values in registers, which no store can alias."""
    return (x[0], x[1], x[2], x[3], x[4], x[5], x[6], x[7], x[8], x[9], x[10], x[11], x[12], x[13], x[14], x[15])


@njit(inline="always", fastmath=FASTMATH)
def _plus(t, x):
    """``t + x[:16]`` for a 16-tuple ``t``: a running sum that stays in registers."""
    return (t[0] + x[0], t[1] + x[1], t[2] + x[2], t[3] + x[3], t[4] + x[4], t[5] + x[5], t[6] + x[6],
            t[7] + x[7], t[8] + x[8], t[9] + x[9], t[10] + x[10], t[11] + x[11], t[12] + x[12], t[13] + x[13],
            t[14] + x[14], t[15] + x[15])  # fmt: skip


@njit(inline="always", fastmath=FASTMATH)
def _row_logits(indptr, indices, values, row, Wt, zero):
    """``sum_j Wt[d_j] * p_j`` over the non-zero pixels ``(d_j, p_j)`` of ``row``, as 16 scalars.

    Even and odd pixels go into two sets of accumulators, added at the end: two independent chains of fused
    multiply-adds, so the loop is not bound by the latency of one.
    """
    z0 = z1 = z2 = z3 = z4 = z5 = z6 = z7 = z8 = z9 = z10 = z11 = z12 = z13 = z14 = z15 = zero
    y0 = y1 = y2 = y3 = y4 = y5 = y6 = y7 = y8 = y9 = y10 = y11 = y12 = y13 = y14 = y15 = zero
    n_features = Wt.shape[0]
    lo, hi = indptr[row], indptr[row + 1]
    for j in range(lo, hi - (hi - lo) % _TWO, _TWO):
        d, e = indices[j], indices[j + _ONE]
        if d >= n_features or e >= n_features:  # never true: an early exit keeps the loop vectoriser off
            break
        w, v, u, t = Wt[d], values[j], Wt[e], values[j + _ONE]
        z0 += w[0] * v
        y0 += u[0] * t
        z1 += w[1] * v
        y1 += u[1] * t
        z2 += w[2] * v
        y2 += u[2] * t
        z3 += w[3] * v
        y3 += u[3] * t
        z4 += w[4] * v
        y4 += u[4] * t
        z5 += w[5] * v
        y5 += u[5] * t
        z6 += w[6] * v
        y6 += u[6] * t
        z7 += w[7] * v
        y7 += u[7] * t
        z8 += w[8] * v
        y8 += u[8] * t
        z9 += w[9] * v
        y9 += u[9] * t
        z10 += w[10] * v
        y10 += u[10] * t
        z11 += w[11] * v
        y11 += u[11] * t
        z12 += w[12] * v
        y12 += u[12] * t
        z13 += w[13] * v
        y13 += u[13] * t
        z14 += w[14] * v
        y14 += u[14] * t
        z15 += w[15] * v
        y15 += u[15] * t
    if (hi - lo) % _TWO:
        w, v = Wt[indices[hi - _ONE]], values[hi - _ONE]
        z0 += w[0] * v
        z1 += w[1] * v
        z2 += w[2] * v
        z3 += w[3] * v
        z4 += w[4] * v
        z5 += w[5] * v
        z6 += w[6] * v
        z7 += w[7] * v
        z8 += w[8] * v
        z9 += w[9] * v
        z10 += w[10] * v
        z11 += w[11] * v
        z12 += w[12] * v
        z13 += w[13] * v
        z14 += w[14] * v
        z15 += w[15] * v
    return (
        z0 + y0,
        z1 + y1,
        z2 + y2,
        z3 + y3,
        z4 + y4,
        z5 + y5,
        z6 + y6,
        z7 + y7,
        z8 + y8,
        z9 + y9,
        z10 + y10,
        z11 + y11,
        z12 + y12,
        z13 + y13,
        z14 + y14,
        z15 + y15,
    )


@njit(inline="always")
def _prefetch_row(indptr, indices, values, labels, row):
    """Prefetch every cache line of ``row``'s pixels, and its label: one per 32 indices, one per 64 values."""
    lo, hi = indptr[row], indptr[row + 1]
    for j in range(lo, hi + np.uint64(31), np.uint64(32)):
        _prefetch(indices, j)
    for j in range(lo, hi + np.uint64(63), np.uint64(64)):
        _prefetch(values, j)
    _prefetch(labels, row)


@njit(inline="always", fastmath=FASTMATH)
def _row_scatter(indptr, indices, values, row, dWt, g):
    """``dWt[d_j] += g * p_j`` over the non-zero pixels of ``row``; ``g`` is a 16-tuple."""
    g0, g1, g2, g3, g4, g5, g6, g7, g8, g9, g10, g11, g12, g13, g14, g15 = g
    for j in range(indptr[row], indptr[row + 1]):
        r = dWt[indices[j]]
        v = values[j]
        r[0] += g0 * v
        r[1] += g1 * v
        r[2] += g2 * v
        r[3] += g3 * v
        r[4] += g4 * v
        r[5] += g5 * v
        r[6] += g6 * v
        r[7] += g7 * v
        r[8] += g8 * v
        r[9] += g9 * v
        r[10] += g10 * v
        r[11] += g11 * v
        r[12] += g12 * v
        r[13] += g13 * v
        r[14] += g14 * v
        r[15] += g15 * v


@njit(inline="always", fastmath=FASTMATH)
def _bias_term(Wt, b, c, const):
    """``const[k] = c * sum_d Wt[d, k] + b[k]``: the part of every logit that does not depend on the image."""
    const[:] = 0.0
    col_sum = _lanes(const)  # 16 zeros, in registers
    for d in range(Wt.shape[0]):
        col_sum = _plus(col_sum, Wt[d])
    for k in range(LANES):
        const[k] = c * col_sum[k] + b[k]


@njit(inline="always", fastmath=FASTMATH)
def _logits(indptr, indices, values, row, Wt, const, a, z):
    """``z = a * Wt^T p + const`` for the image in ``row``."""
    t = _row_logits(indptr, indices, values, row, Wt, a - a)
    for k in range(LANES):
        z[k] = a * t[k] + const[k]


@njit(inline="always", fastmath=FASTMATH)
def _exp_nonpositive(x):
    """``exp(x)`` for ``x <= 0`` (a logit minus the largest one), in float64, without a call into libm.

    ``x = n ln 2 + r`` with ``n = round(x / ln 2)`` and ``|r| <= ln(2) / 2``, so ``exp(x) = 2^n exp(r)``:
    ``exp(r)`` is its Taylor polynomial of degree 12 (error below ``0.35^13 / 13! = 2e-16``), ``2^n`` is built
    from its bits (:func:`_pow2`). Every operation has a vector instruction, so a loop over 16 lanes becomes
    a few dozen of them instead of a call to ``exp`` per lane. Relative error below ``2e-16 (1 + |x|)`` (the rounding
    of ln 2 grows with ``n``); results below ``2^-1022`` are 0; NaN stays NaN.
    """
    x = float(x)
    if x < -1000.0:  # exp is 0 there; a comparison with NaN is false, so NaN goes on
        x = -1000.0
    n = np.floor(x / _LN2 + 0.5)
    r = x - n * _LN2
    p = 0.0
    for coefficient in _EXP_TAYLOR:  # Horner's rule
        p = p * r + coefficient
    return p * _pow2(n)


@njit(inline="always", fastmath=FASTMATH)
def _softmax(z, n_classes):
    """Softmax of the first ``n_classes`` lanes of ``z`` through the max shift, in place and without branches.

    Returns ``(m, pred, s)``: the largest logit, the first class that has it, and ``s = sum_k exp(z_k - m)``;
    leaves ``z_k <- exp(z_k - m)`` in the first ``n_classes`` lanes and 0 in the padded ones. Every loop runs
    over all 16 lanes with selects instead of branches, so LLVM turns each into a few vector instructions.
    """
    m = z[0]
    for k in range(1, LANES):
        m = z[k] if k < n_classes and z[k] > m else m
    pred = 0
    for k in range(LANES - 1, -1, -1):  # the lowest k that has the max wins, as in argmax
        pred = k if z[k] == m else pred
    s = 0.0
    for k in range(LANES):
        e = _exp_nonpositive(z[k] - m) if k < n_classes else 0.0
        z[k] = e
        s += e
    return m, pred, s


@njit(inline="always", fastmath=FASTMATH)
def _log_softmax_at(z, n_classes, label):
    """``(log p[label], argmax)`` of the first ``n_classes`` logits; overwrites ``z``."""
    z_label = z[label]
    m, pred, s = _softmax(z, n_classes)
    return z_label - m - np.log(s), pred


@njit(inline="always")
def _require_lanes(Wt):
    """Refuse weights whose rows are not :data:`LANES` wide.

    Past such a test LLVM knows that a row is 64 bytes, so row ``d`` is at ``d << 6`` instead of ``d`` times a
    stride read from memory (7% faster on one thread at batch 64). The loops that index rows repeat it as an
    early return that never happens: the threaded kernel compiles each ``prange`` body as a function of its
    own, and a ``raise`` there would make Numba run the loop serially.
    """
    if Wt.shape[1] != LANES:
        raise ValueError("the kernels need weight rows of LANES (16) columns")


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
            _prefetch_row(indptr, indices, values, labels, order[i + PREFETCH_AHEAD])
        row = order[i]
        label = labels[row]
        _logits(indptr, indices, values, row, Wt, const, a, z)
        z_label = z[label]
        m, pred, s = _softmax(z, n_classes)  # z <- e = exp(z - m)
        loss -= z_label - m - np.log(s)
        correct += pred == label
        # z <- a g, with g = (e / s - onehot(label)) / B (0 in the padded lanes) added into db
        scale = inv_batch / s
        for k in range(LANES):
            g = z[k] * scale - (inv_batch if k == label else 0.0)
            db[k] += g
            z[k] = a * g
        _row_scatter(indptr, indices, values, row, dWt, _lanes(z))
    return loss, correct


@njit(inline="always", fastmath=FASTMATH)
def _sgd_factors(first, lr, momentum, one_minus_dampening, nesterov):
    """``(keep, new, plain, look)`` that make the branch-free update of :func:`_step_rows` PyTorch's SGD:
    ``g = G + wd P``, ``B = keep B + new g``, ``P -= lr (plain g + look B)``.

    With momentum the buffer starts as the gradient (``keep 0, new 1``), then becomes
    ``momentum B + (1 - dampening) g``, and the step is ``g + momentum B`` (Nesterov) or ``B``. Without
    momentum the buffer stays 0 and the step is ``g``. Every factor is in the weights' dtype.
    """
    zero, one = lr - lr, lr / lr
    if momentum == 0:
        return zero, zero, one, zero
    keep = zero if first else momentum
    new = one if first else one_minus_dampening
    plain, look = (one, momentum) if nesterov else (zero, one)
    return keep, new, plain, look


@njit(inline="always", fastmath=FASTMATH)
def _sum_blocks(blocks, out):
    """``out = sum_t blocks[t]`` for (T, 16) per-thread partials, in block order (the same bits every run)."""
    for k in range(LANES):
        acc = blocks[0, k]
        for t in range(1, blocks.shape[0]):
            acc += blocks[t, k]
        out[k] = acc


@njit(inline="always", fastmath=FASTMATH)
def _step_rows(Wt, bufW, dW_blocks, c, db, factors, lr, weight_decay, lo, hi, clear, col_sum):
    """The SGD step of weight rows ``lo:hi`` in one pass; returns ``col_sum`` plus the new rows' column sums.

    ``dW_blocks`` (T, D, 16) holds one partial gradient per thread (T = 1 on the serial path). For each row:
    sum the partials in block order, add the rank-one correction ``c * db``, take the step (factors from
    :func:`_sgd_factors`), zero block 0's row if ``clear``, and add the new row into the column sums, which
    stay in registers (16 scalars).
    """
    if Wt.shape[1] != LANES or bufW.shape[1] != LANES or dW_blocks.shape[2] != LANES:  # never true: the width
        return col_sum
    keep, new, plain, look = factors
    zero = lr - lr
    for d in range(lo, hi):
        g = dW_blocks[0, d]
        w, buf = Wt[d], bufW[d]
        for t in range(1, dW_blocks.shape[0]):
            partial = dW_blocks[t, d]
            for k in range(LANES):
                g[k] += partial[k]
        for k in range(LANES):
            gk = g[k] + c * db[k] + weight_decay * w[k]
            bk = keep * buf[k] + new * gk
            buf[k] = bk
            w[k] -= lr * (plain * gk + look * bk)
            if clear:
                g[k] = zero
        col_sum = _plus(col_sum, w)
    return col_sum


@njit(inline="always", fastmath=FASTMATH)
def _step_bias(b, bufb, db, factors, lr, weight_decay, c, col_sum, const):
    """The bias's SGD step, then ``const = c * col_sum + b``: the next step's image-independent logits."""
    keep, new, plain, look = factors
    for k in range(LANES):
        gk = db[k] + weight_decay * b[k]
        bk = keep * bufb[k] + new * gk
        bufb[k] = bk
        b[k] -= lr * (plain * gk + look * bk)
        const[k] = c * col_sum[k] + b[k]


# ----------------------------------------------------------------------------------------------------------
# Kernels


@njit(cache=True, fastmath=FASTMATH)
def _train_serial(indptr, indices, values, labels, order, starts, Wt, b, bufW, bufb, first,
                  a, c, lr, momentum, one_minus_dampening, weight_decay, nesterov, n_classes):  # fmt: skip
    """SGD steps over the batches ``order[starts[s]:starts[s+1]]``, on one thread; ``first[0]`` says the
    momentum buffers are still empty. Returns (loss sum, correct)."""
    _require_lanes(Wt)
    z = np.empty(LANES, dtype=Wt.dtype)
    const = np.empty(LANES, dtype=Wt.dtype)
    dW_blocks = np.zeros((1,) + Wt.shape, dtype=Wt.dtype)
    db_blocks = np.zeros((1, LANES), dtype=Wt.dtype)
    db = np.empty(LANES, dtype=Wt.dtype)
    inv_batch = np.empty(1, dtype=Wt.dtype)  # 1 / B in the weights' dtype
    zeros = _lanes(np.zeros(LANES, dtype=Wt.dtype))
    _bias_term(Wt, b, c, const)
    loss, correct = 0.0, 0
    for s in range(len(starts) - 1):
        lo, hi = starts[s], starts[s + 1]
        inv_batch[0] = 1.0 / (hi - lo)
        step_loss, step_correct = _accumulate(
            indptr, indices, values, order, lo, hi, Wt, const, a, inv_batch[0], n_classes, labels, z, dW_blocks[0],
            db_blocks[0],
        )  # fmt: skip
        loss += step_loss
        correct += step_correct
        factors = _sgd_factors(first[0], lr, momentum, one_minus_dampening, nesterov)
        _sum_blocks(db_blocks, db)
        db_blocks[:] = 0.0
        col_sum = _step_rows(Wt, bufW, dW_blocks, c, db, factors, lr, weight_decay, 0, len(Wt), True, zeros)
        _step_bias(b, bufb, db, factors, lr, weight_decay, c, col_sum, const)
        first[0] = False
    return loss, correct


@njit(cache=True, parallel=True, fastmath=FASTMATH)
def _train_parallel(indptr, indices, values, labels, order, starts, Wt, b, bufW, bufb, first,
                    a, c, lr, momentum, one_minus_dampening, weight_decay, nesterov, n_classes, n_blocks):  # fmt: skip
    """As :func:`_train_serial`, each batch split into ``n_blocks`` contiguous blocks, one per thread, each
    accumulating into its own gradient buffer. The step is split too: thread ``t`` updates a ``1 / n_blocks``
    share of the weight rows, summing every thread's partial gradient for them in block order, so the result
    does not depend on scheduling."""
    _require_lanes(Wt)
    dW_blocks = np.empty((n_blocks,) + Wt.shape, dtype=Wt.dtype)  # each thread zeroes its own, every step
    db_blocks = np.empty((n_blocks, LANES), dtype=Wt.dtype)
    z_blocks = np.empty((n_blocks, LANES), dtype=Wt.dtype)
    col_sum_blocks = np.empty((n_blocks, LANES), dtype=Wt.dtype)
    loss_blocks = np.empty(n_blocks, dtype=np.float64)
    correct_blocks = np.empty(n_blocks, dtype=np.int64)
    const = np.empty(LANES, dtype=Wt.dtype)
    db = np.empty(LANES, dtype=Wt.dtype)
    inv_batch = np.empty(1, dtype=Wt.dtype)
    zeros = _lanes(np.zeros(LANES, dtype=Wt.dtype))
    n_rows = len(Wt)
    _bias_term(Wt, b, c, const)
    loss, correct = 0.0, 0
    for s in range(len(starts) - 1):
        lo, hi = starts[s], starts[s + 1]
        inv_batch[0] = 1.0 / (hi - lo)
        for t in prange(n_blocks):
            dW_blocks[t] = 0.0  # each thread clears its own buffers: no cache line changes core for it
            db_blocks[t] = 0.0
            block_lo = lo + (hi - lo) * t // n_blocks
            block_hi = lo + (hi - lo) * (t + 1) // n_blocks
            loss_blocks[t], correct_blocks[t] = _accumulate(
                indptr, indices, values, order, block_lo, block_hi, Wt, const, a, inv_batch[0], n_classes, labels,
                z_blocks[t], dW_blocks[t], db_blocks[t],
            )  # fmt: skip
        for t in range(n_blocks):
            loss += loss_blocks[t]
            correct += correct_blocks[t]
        factors = _sgd_factors(first[0], lr, momentum, one_minus_dampening, nesterov)
        _sum_blocks(db_blocks, db)
        for t in prange(n_blocks):
            rows_lo, rows_hi = n_rows * t // n_blocks, n_rows * (t + 1) // n_blocks
            col_sum = _step_rows(Wt, bufW, dW_blocks, c, db, factors, lr, weight_decay, rows_lo, rows_hi, False, zeros)
            for k in range(LANES):
                col_sum_blocks[t, k] = col_sum[k]
        _sum_blocks(col_sum_blocks, const)
        _step_bias(b, bufb, db, factors, lr, weight_decay, c, const, const)
        first[0] = False
    return loss, correct


@njit(cache=True, parallel=True, fastmath=FASTMATH)
def _evaluate(indptr, indices, values, labels, Wt, b, a, c, n_classes, predictions):
    """Loss sum and correct count over every row; writes each row's predicted class into ``predictions``.

    Each row's loss goes into its own slot and the sums come after the parallel loop, in row order, so the
    result does not depend on how the rows were shared among threads.
    """
    const = np.empty(LANES, dtype=Wt.dtype)
    _bias_term(Wt, b, c, const)
    losses = np.empty(len(indptr) - 1)
    for row in prange(len(indptr) - 1):
        z = np.empty(LANES, dtype=Wt.dtype)
        _logits(indptr, indices, values, row, Wt, const, a, z)
        log_p, predictions[row] = _log_softmax_at(z, n_classes, labels[row])
        losses[row] = -log_p
    return losses.sum(), (predictions == labels).sum()


# ----------------------------------------------------------------------------------------------------------
# The public, validated wrappers


class FoldedLinear:
    """A (K, D) linear layer and its SGD momentum buffers, stored for the kernels: ``Wt`` (D, 16) and ``b`` (16,),
    zero beyond class K, on inputs ``x = a * values + c``. The methods speak ``nn.Linear``'s (K, D) layout."""

    def __init__(self, weight: np.ndarray, bias: np.ndarray, a: float, c: float):
        n_classes, n_features = weight.shape
        if n_classes > LANES:
            raise ValueError(f"{n_classes} classes, at most {LANES} supported")
        self.n_classes, self.n_features = n_classes, n_features
        self.dtype = weight.dtype
        self.a, self.c = a, c
        self.Wt = np.zeros((n_features, LANES), dtype=self.dtype)
        self.b = np.zeros(LANES, dtype=self.dtype)
        self.bufW, self.bufb = np.zeros_like(self.Wt), np.zeros_like(self.b)
        self.first = np.ones(1, dtype=np.bool_)  # no momentum buffer yet
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

    def train_steps(self, rows: SparseRows, labels, order, batches, lr, momentum=0.0, dampening=0.0,
                    weight_decay=0.0, nesterov=False) -> tuple[float, int]:  # fmt: skip
        """SGD steps on the batches ``order[s]`` for each slice ``s`` of ``batches`` (consecutive, in order).

        Returns (sum over samples of their loss, number predicted correctly before each step).
        """
        starts = np.array([s.start for s in batches] + [batches[-1].stop], dtype=np.int64)
        t = self.dtype.type
        args = (rows.indptr, rows.indices, rows.values, labels, order, starts, self.Wt, self.b, self.bufW,
                self.bufb, self.first, t(self.a), t(self.c), t(lr), t(momentum), t(1 - dampening), t(weight_decay),
                bool(nesterov), self.n_classes)  # fmt: skip
        n_threads = numba.get_num_threads()
        with _vectoriser_settings():
            if n_threads > 1 and batches[0].stop - batches[0].start >= PARALLEL_MIN_BATCH:
                loss, correct = _train_parallel(*args, n_threads)
            else:
                loss, correct = _train_serial(*args)
        return float(loss), int(correct)

    def evaluate(self, rows: SparseRows, labels) -> tuple[float, float, np.ndarray]:
        """``(mean loss, accuracy, predictions)`` over every row."""
        predictions = np.empty(len(rows), dtype=np.int64)
        t = self.dtype.type
        with _vectoriser_settings():
            loss, correct = _evaluate(rows.indptr, rows.indices, rows.values, labels, self.Wt, self.b, t(self.a),
                                      t(self.c), self.n_classes, predictions)  # fmt: skip
        return float(loss) / len(rows), int(correct) / len(rows), predictions


def warm_up(dtype: str | np.dtype, values_dtype: str | np.dtype = np.uint8) -> tuple[float, bool]:
    """Compile (or load from Numba's cache) every kernel for ``dtype`` on a tiny problem.

    Returns ``(seconds, compiled)``: ``compiled`` is False when everything came from the on-disk cache. Call it
    before timing anything, so compilation never lands inside a measurement.
    """
    start = time.perf_counter()
    misses_before = _cache_misses()
    rng = np.random.default_rng(0)
    x = (rng.random((8, 12)) < 0.5) * rng.integers(1, 255, (8, 12))
    rows = SparseRows.from_dense(x.astype(values_dtype))
    layer = FoldedLinear(np.zeros((3, 12), dtype=dtype), np.zeros(3, dtype=dtype), 0.5, -0.1)
    labels = rng.integers(0, 3, 8)
    order = np.arange(8)
    for batch in (2, 8):
        batches = [slice(i, i + batch) for i in range(0, 8, batch)]
        layer.train_steps(rows, labels, order, batches, 0.1, 0.9, 0.0, 1e-4, True)
    layer.evaluate(rows, labels)
    if numba.get_num_threads() > 1:  # the parallel path too, whatever PARALLEL_MIN_BATCH is
        args = (rows.indptr, rows.indices, rows.values, labels, order, np.array([0, 8]), layer.Wt, layer.b,
                layer.bufW, layer.bufb, layer.first, *(layer.dtype.type(v) for v in (0.5, -0.1, 0.1, 0.9, 1, 0)),
                False, 3, 2)  # fmt: skip
        with _vectoriser_settings():
            _train_parallel(*args)
    return time.perf_counter() - start, _cache_misses() > misses_before


def _cache_misses() -> int:
    kernels = (_train_serial, _train_parallel, _evaluate)
    return sum(sum(getattr(k, "stats", None).cache_misses.values()) for k in kernels if hasattr(k, "stats"))
