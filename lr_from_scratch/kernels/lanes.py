"""The building blocks of the fused kernels, inlined into them: 16-lane rows, the softmax, the SGD step.

Two loop shapes, each written for the LLVM vectoriser that handles it: per-pixel rows of 16 lanes held in 16
scalars (a register block, packed by the SLP vectoriser), and long flat loops over whole arrays (the loop
vectoriser). Every function here is ``inline="always"``: it exists to be read and tested on its own, and
compiles into the kernels of :mod:`.fused` as if written there.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from .llvm import FASTMATH, LANES, pow2, prefetch

# Row offsets are uint64: an unsigned index needs no negative-index check, which saves about a third of the
# instructions of the pixel loops. Arithmetic on them stays unsigned through these constants.
_ONE, _TWO = np.uint64(1), np.uint64(2)
#: ``1 / k!`` for k = 12 down to 0: the Taylor polynomial of ``exp`` in Horner order.
_EXP_TAYLOR = tuple(1 / math.factorial(k) for k in range(12, -1, -1))
_LN2 = math.log(2.0)


@njit(inline="always")
def lanes(x):
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
def prefetch_row(indptr, indices, values, labels, row):
    """Prefetch every cache line of ``row``'s pixels, and its label: one per 32 indices, one per 64 values."""
    lo, hi = indptr[row], indptr[row + 1]
    for j in range(lo, hi + np.uint64(31), np.uint64(32)):
        prefetch(indices, j)
    for j in range(lo, hi + np.uint64(63), np.uint64(64)):
        prefetch(values, j)
    prefetch(labels, row)


@njit(inline="always", fastmath=FASTMATH)
def row_scatter(indptr, indices, values, row, dWt, g):
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
def bias_term(Wt, b, c, const):
    """``const[k] = c * sum_d Wt[d, k] + b[k]``: the part of every logit that does not depend on the image."""
    const[:] = 0.0
    col_sum = lanes(const)  # 16 zeros, in registers
    for d in range(Wt.shape[0]):
        col_sum = _plus(col_sum, Wt[d])
    for k in range(LANES):
        const[k] = c * col_sum[k] + b[k]


@njit(inline="always", fastmath=FASTMATH)
def logits(indptr, indices, values, row, Wt, const, a, z):
    """``z = a * Wt^T p + const`` for the image in ``row``."""
    t = _row_logits(indptr, indices, values, row, Wt, a - a)
    for k in range(LANES):
        z[k] = a * t[k] + const[k]


@njit(inline="always", fastmath=FASTMATH)
def exp_nonpositive(x):
    """``exp(x)`` for ``x <= 0`` (a logit minus the largest one), in float64, without a call into libm.

    ``x = n ln 2 + r`` with ``n = round(x / ln 2)`` and ``|r| <= ln(2) / 2``, so ``exp(x) = 2^n exp(r)``:
    ``exp(r)`` is its Taylor polynomial of degree 12 (error below ``0.35^13 / 13! = 2e-16``), ``2^n`` is built
    from its bits (:func:`pow2`). Every operation has a vector instruction, so a loop over 16 lanes becomes
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
    return p * pow2(n)


@njit(inline="always", fastmath=FASTMATH)
def softmax_lanes(z, n_classes):
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
        e = exp_nonpositive(z[k] - m) if k < n_classes else 0.0
        z[k] = e
        s += e
    return m, pred, s


@njit(inline="always", fastmath=FASTMATH)
def log_softmax_at(z, n_classes, label):
    """``(log p[label], argmax)`` of the first ``n_classes`` logits; overwrites ``z``."""
    z_label = z[label]
    m, pred, s = softmax_lanes(z, n_classes)
    return z_label - m - np.log(s), pred


@njit(inline="always")
def require_lanes(Wt):
    """Refuse weights whose rows are not :data:`LANES` wide.

    Past such a test LLVM knows that a row is 64 bytes, so row ``d`` is at ``d << 6`` instead of ``d`` times a
    stride read from memory (7% faster on one thread at batch 64). The loops that index rows repeat it as an
    early return that never happens: the threaded kernel compiles each ``prange`` body as a function of its
    own, and a ``raise`` there would make Numba run the loop serially.
    """
    if Wt.shape[1] != LANES:
        raise ValueError("the kernels need weight rows of LANES (16) columns")


@njit(inline="always", fastmath=FASTMATH)
def sgd_factors(first, lr, momentum, one_minus_dampening, nesterov):
    """``(keep, new, plain, look)`` that make the branch-free update of :func:`step_rows` PyTorch's SGD:
    ``g = G + wd P``, ``B = keep B + new g``, ``P -= lr (plain g + look B)``.

    With momentum the buffer starts as the gradient (``keep 0, new 1``), then becomes
    ``momentum B + (1 - dampening) g``, and the step is ``g + momentum B`` (Nesterov) or ``B``. Without
    momentum the buffer stays 0 and the step is ``g``. Every factor is in the weights' dtype: ``lr ** 0`` is 1
    in that dtype for every rate, 0 included (the schedule can take a float32 rate to 0).
    """
    zero, one = lr - lr, lr**0
    if momentum == 0:
        return zero, zero, one, zero
    keep = zero if first else momentum
    new = one if first else one_minus_dampening
    plain, look = (one, momentum) if nesterov else (zero, one)
    return keep, new, plain, look


@njit(inline="always", fastmath=FASTMATH)
def sum_blocks(blocks, out):
    """``out = sum_t blocks[t]`` for (T, 16) per-thread partials, in block order (the same bits every run)."""
    for k in range(LANES):
        acc = blocks[0, k]
        for t in range(1, blocks.shape[0]):
            acc += blocks[t, k]
        out[k] = acc


@njit(inline="always", fastmath=FASTMATH)
def step_rows(Wt, bufW, dW_blocks, c, db, factors, lr, weight_decay, lo, hi, clear, col_sum):
    """The SGD step of weight rows ``lo:hi`` in one pass; sets ``col_sum`` (16,) to the new rows' column sums.

    ``dW_blocks`` (T, D, 16) holds one partial gradient per block of the batch (T = 1 on the serial path). For
    each row: sum the partials in block order, add the rank-one correction ``c * db``, take the step (factors
    from :func:`sgd_factors`), zero block 0's row if ``clear``, and add the new row into the column sums.
    """
    if Wt.shape[1] != LANES or bufW.shape[1] != LANES or dW_blocks.shape[2] != LANES:  # never true: the width
        return
    keep, new, plain, look = factors
    zero = lr - lr
    for k in range(LANES):
        col_sum[k] = zero
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
            wk = w[k] - lr * (plain * gk + look * bk)
            w[k] = wk
            col_sum[k] += wk
            if clear:
                g[k] = zero


@njit(inline="always", fastmath=FASTMATH)
def step_bias(b, bufb, db, factors, lr, weight_decay):
    """The bias's SGD step, as :func:`step_rows` takes the weights'."""
    keep, new, plain, look = factors
    for k in range(LANES):
        gk = db[k] + weight_decay * b[k]
        bk = keep * bufb[k] + new * gk
        bufb[k] = bk
        b[k] -= lr * (plain * gk + look * bk)


@njit(inline="always", fastmath=FASTMATH)
def bias_term_from_sums(col_sum_blocks, b, c, const):
    """:func:`bias_term` from the column sums that :func:`step_rows` left, one row per share of the weight
    rows (T, 16): ``const = c * sum_t col_sum_blocks[t] + b``, without another pass over the weights."""
    sum_blocks(col_sum_blocks, const)
    for k in range(LANES):
        const[k] = c * const[k] + b[k]
