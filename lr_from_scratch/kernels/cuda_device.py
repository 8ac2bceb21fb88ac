"""The CUDA kernels, the code that runs on the GPU (Numba's CUDA target): training, every SGD step of a call in
one launch, and inference. :mod:`.cuda` is the host side that launches them.

A step at batch 64 is about 1M multiply-adds, a few microseconds of one GPU block's time, while a kernel launch
and a synchronisation cost about as much again. So a training kernel carries the weights across all the steps it
is given (an epoch by default): no launch, no host round trip between steps. Inside a step its threads take
turns at the work, with a barrier between the phases, and every sum runs in a fixed order, so a run gives the
same bits every time. The dense and the sparse kernel are one block each (``syncthreads`` as the barrier); the
grid kernel spreads the larger batches' steps over the whole GPU (a grid-wide barrier).

**The dense kernel**, :func:`train_steps_dense`, reads every pixel, for any batch size:

1. logits: thread ``t`` computes ``z[i, k] = a W_k . p_i + c sum_d W[k, d] + b_k`` for some pairs ``(i, k)``
   (the normalisation folded in, as on the CPU: the images stay uint8);
2. softmax: thread ``i`` turns its sample's logits into ``g[i] = (p_i - onehot(y_i)) / B``, its loss and its
   prediction;
3. gradient and update: thread ``t`` owns some pixels ``d`` and, for each class, sums ``a g[i, k] p_i[d]`` over
   the batch (plus the rank-one ``c db_k``), then applies PyTorch's SGD rule to ``W[k, d]`` at once; the first
   threads do the bias.

**The sparse kernel**, :func:`train_steps_sparse`, reads only the non-zero pixels (about 19% of MNIST's), from
compressed sparse rows (:class:`~lr_from_scratch.data.sparse.SparseRows`), as the CPU kernels do, and works by
warps of 32 threads (lanes), which add up their lanes' sums by shuffles (:func:`_warp_sum`), with two barriers a
step:

1. a warp per sample: its lanes share out its non-zero pixels ``j``, each lane summing ``W[k, j] p_ij`` for every
   class in registers; the warp adds up the lanes' sums, adds ``const_k = c sum_d W[k, d] + b_k``, and one lane
   does the softmax into ``g`` (shared memory). Meanwhile the warp marks the *groups* of 32 pixels the sample has
   a pixel in: ``masks[w, q]`` gets bit ``t`` when sample ``32 w + t`` has a pixel in group ``q`` (an atomic OR,
   whose result does not depend on the order the threads arrive in);
2. every warp sums the bias gradient ``db_k = sum_i g_ik`` for itself; the last one, the step's loss and correct
   count;
3. a warp per group, a lane per pixel ``d``: it walks the set bits of the group's masks, lowest first, the whole
   warp reading one sample's 32 pixels at a time, so the sum ``sum_i g_ik p_id`` visits the samples that have a
   pixel in the group, in sample order; then the SGD update, and the group's share of ``sum_d W[k, d]`` of the
   new weights, for the next step's constants.

Its limits: batches of at most :data:`MAX_BATCH` samples (two mask words per group), :data:`MAX_CLASSES` classes
(a lane's accumulators) and :data:`MAX_PIXELS` pixels (the groups a lane marks are the bits of one word), on a
block of whole warps.

**The grid kernel**, :func:`train_steps_grid`, runs on a cooperative grid (every block resident at once) for the
batches above that: a warp per sample for the logits (as in the sparse kernel, :func:`_warp_logits`), a thread per
(chunk of samples, pixel) for the gradient's shares, a thread per (class, pixel) to sum them in chunk order;
:data:`CHUNK` fixes every sum's order, whatever the grid's size. :mod:`.cuda` picks the sparse kernel, else the
grid kernel, else (more than :data:`MAX_CLASSES` classes) the dense one.

**Inference**, :func:`evaluate`, takes a thread per image.

The kernels and their device functions live in this one module on purpose: Numba's simulator swaps the CUDA
module into the globals of every device function it calls, and for a function from another module it takes a
lock to do so on every call: the simulated MNIST test took 76 s instead of 6.
"""

from __future__ import annotations

import math

import numpy as np
from numba import config, cuda, float64, int64, uint32

from .simulator import install

if config.ENABLE_CUDASIM:  # the warp shuffles the sparse kernel sums with, and barriers that do not spin
    install()

#: Lanes of a warp, and the sparse kernel's samples per mask word (a uint32) and pixels per group (a lane each).
WORD = 32
#: Every lane of a warp takes part in its shuffles.
FULL_WARP = 0xFFFFFFFF
#: The sparse kernel's mask words per pixel group, and so the largest batch it takes.
MASK_WORDS = 2
MAX_BATCH = WORD * MASK_WORDS
#: The most classes of the sparse and the grid kernels: a thread keeps one accumulator per class, in registers.
MAX_CLASSES = 16
#: The rows of the sparse kernel's shared arrays that the 32 lanes of a warp read a row each of (g, column_sums):
#: one longer than MAX_CLASSES, so that lane l's entry k falls in a memory bank of its own (with rows of 16 the
#: lanes would share two of the 32 banks, and take turns at them).
PADDED_CLASSES = MAX_CLASSES + 1
#: The most pixels of the sparse kernel: a lane marks the groups its pixels fall in as the bits of one word.
MAX_PIXELS = WORD * WORD
#: The grid kernel's samples per chunk: each (chunk, pixel) thread sums its share of the gradient over them.
CHUNK = 256
#: The sparse kernel's registers a thread at most: a multiprocessor's 65,536 over its block's 512 threads
#: (``cuda.SPARSE_THREADS``). Unbounded, a compiler may take more to keep more loads in flight, and a block that
#: needs more registers than a multiprocessor has does not launch.
SPARSE_REGISTERS = 128
#: The sparse kernel's options for the compiler (the simulator compiles nothing, and its ``cuda.jit`` refuses them).
SPARSE_OPTIONS = {} if config.ENABLE_CUDASIM else {"max_registers": SPARSE_REGISTERS}
#: The samples whose pixel a gradient thread loads before it uses any of them (sparse and grid kernels): a load
#: from global memory takes hundreds of cycles, and a thread waits for one only when it uses the value, so this
#: many waits overlap. Each load needs a register or two until it is used.
LOADS_IN_FLIGHT = 8


@cuda.jit
def train_steps_dense(images, labels, order, starts, a, c, W, b, bufW, bufb, first, lr, momentum,
                      one_minus_dampening, weight_decay, nesterov, g, db, sample_loss, sample_correct, loss,
                      correct):  # fmt: skip
    """The dense kernel: SGD steps on ``order[starts[s]:starts[s+1]]`` for each step ``s``, in one block.

    images (n, D) uint8 or float, labels (n,) int64, order (n,) and starts (S + 1,) int64; W (K, D) and b (1, K)
    with their momentum buffers bufW (K, D) and bufb (1, K), updated in place; first (1,) bool: the buffers are
    still empty. Scalars in the weights' dtype: ``a``, ``c`` (the inputs are ``a p + c``), ``lr``, ``momentum``,
    ``1 - dampening``, ``weight_decay``; ``nesterov`` bool. Scratch: g (B, K) and db (K,) in the weights' dtype,
    sample_loss (B,) float64, sample_correct (B,) int64. Out: loss (S,) float64 and correct (S,) int64, each
    step's loss sum and correct count.
    """
    tid, threads = cuda.threadIdx.x, cuda.blockDim.x
    n_classes, n_pixels = W.shape
    zero = a - a  # 0 in the weights' dtype
    for s in range(starts.shape[0] - 1):
        lo, hi = starts[s], starts[s + 1]
        batch = hi - lo
        # 1. logits, the normalisation folded in: z = a W p + c sum_d W[:, d] + b
        for pair in range(tid, batch * n_classes, threads):
            i, k = pair // n_classes, pair % n_classes
            row = order[lo + i]
            dot, col = zero, zero
            for d in range(n_pixels):
                dot += W[k, d] * images[row, d]
                col += W[k, d]
            g[i, k] = a * dot + c * col + b[0, k]
        cuda.syncthreads()
        # 2. softmax through the max shift: each sample's loss and prediction, and g <- (p - onehot(y)) / B
        for i in range(tid, batch, threads):
            label = labels[order[lo + i]]
            sample_loss[i], best = softmax_gradient(g[i], label, batch)
            sample_correct[i] = best == label
        cuda.syncthreads()
        for k in range(tid, n_classes, threads):  # the bias gradient, also the weights' rank-one term
            total = zero  # in a register: a sum into db[k] itself would store to memory at every sample
            for i in range(batch):
                total += g[i, k]
            db[k] = total
        if tid == 0:  # the step's loss and correct count, in sample order
            loss[s], correct[s] = _sum_in_order(sample_loss, sample_correct, 0, batch)
        cuda.syncthreads()
        # 3. gradient and SGD update: a thread per pixel for the weights, the first threads for the bias
        first_step = first[0]
        for d in range(tid, n_pixels, threads):
            for k in range(n_classes):
                grad = zero
                for i in range(batch):
                    grad += g[i, k] * images[order[lo + i], d]
                sgd_step(W, bufW, k, d, a * grad + c * db[k], lr, weight_decay, first_step, momentum,
                         one_minus_dampening, nesterov)  # fmt: skip
        for k in range(tid, n_classes, threads):
            sgd_step(b, bufb, 0, k, db[k], lr, weight_decay, first_step, momentum, one_minus_dampening, nesterov)
        cuda.syncthreads()
        if tid == 0:
            first[0] = False
        cuda.syncthreads()


@cuda.jit(device=True, inline=True)
def sgd_step(param, buf, row, col, grad, lr, weight_decay, first_step, momentum, one_minus_dampening, nesterov):
    """PyTorch's SGD step for the parameter ``param[row, col]`` whose loss gradient is ``grad``: weight decay
    adds ``weight_decay * param``; with momentum, the buffer ``buf[row, col]`` starts as that gradient ``g``, then
    becomes ``momentum b + (1 - dampening) g``, and the direction is ``g + momentum b`` (Nesterov) or ``b``;
    without, it is ``g``. The parameter moves by ``-lr`` times the direction."""
    grad += weight_decay * param[row, col]
    if momentum != 0:
        velocity = grad if first_step else momentum * buf[row, col] + one_minus_dampening * grad
        buf[row, col] = velocity
        grad = grad + momentum * velocity if nesterov else velocity
    param[row, col] -= lr * grad


@cuda.jit(device=True, inline=True)
def softmax_gradient(z, label, batch):
    """One sample's logits ``z`` (K,) become ``(softmax(z) - onehot(label)) / batch`` in place, through the max
    shift (each exponential computed once); returns its loss ``log sum exp(z) - z[label]`` and its prediction, the
    first largest logit (``argmax``'s rule). The division is in the logits' dtype, as float32 arithmetic gives."""
    m, best = z[0], 0
    for k in range(1, z.shape[0]):
        if z[k] > m:
            m, best = z[k], k
    z_label, total = z[label], z[0] - z[0]
    for k in range(z.shape[0]):
        z[k] = math.exp(z[k] - m)
        total += z[k]
    size = z.dtype.type(batch)
    for k in range(z.shape[0]):
        z[k] = (z[k] / total - z.dtype.type(k == label)) / size
    return m + math.log(total) - z_label, best


@cuda.jit(**SPARSE_OPTIONS)
def train_steps_sparse(dense, indptr, indices, values, labels, order, starts, a, c, W, b, bufW, bufb, first, lr,
                       momentum, one_minus_dampening, weight_decay, nesterov, Wt, loss, correct):  # fmt: skip
    """The sparse kernel: SGD steps on ``order[starts[s]:starts[s+1]]`` for each step ``s`` (each at most MAX_BATCH
    samples), in one block of whole warps.

    dense (n, D) the images as they are, and their non-zero entries as CSR: indptr (n + 1,) int64, indices
    (nnz,) uint16, values (nnz,); labels (n,) int64, order (n,) and starts (S + 1,) int64. W (K, D), b (1, K),
    their momentum buffers, ``first`` and the scalars as for the dense kernel; K at most MAX_CLASSES, D at most
    MAX_PIXELS. Scratch: Wt (D, K) in the weights' dtype, the weights transposed, so that one pixel's weights are
    side by side for the logits' gathers (kept equal to W). Out: loss (S,) float64 and correct (S,) int64.
    """
    tid, threads = cuda.threadIdx.x, cuda.blockDim.x
    lane, warp, warps = tid % WORD, tid // WORD, threads // WORD
    n_classes, n_pixels = W.shape
    n_groups = (n_pixels + WORD - 1) // WORD  # pixel groups: a warp's 32 lanes, one pixel each
    zero = a - a  # 0 in the weights' dtype
    masks = cuda.shared.array((MASK_WORDS, WORD), uint32)  # masks[w, q]: bit t for sample 32 w + t in group q
    g = cuda.shared.array((MAX_BATCH, PADDED_CLASSES), W.dtype)  # logits, then dL/dz
    rows = cuda.shared.array(MAX_BATCH, int64)  # the step's rows of the images
    sample_loss = cuda.shared.array(MAX_BATCH, float64)
    sample_correct = cuda.shared.array(MAX_BATCH, int64)
    column_sums = cuda.shared.array((WORD, PADDED_CLASSES), W.dtype)  # column_sums[q, k]: W[k, d] over group q
    # each warp's copy of the step's constants c sum_d W[k, d] + b_k, then of the bias gradient: in shared memory,
    # not in registers, which the lanes' accumulators fill
    const = cuda.shared.array((WORD, MAX_CLASSES), W.dtype)[warp]
    db = cuda.shared.array((WORD, MAX_CLASSES), W.dtype)[warp]
    for word in range(tid, MASK_WORDS * WORD, threads):
        masks[word // WORD, word % WORD] = 0
    _transpose(W, Wt, tid, threads)
    for q in range(warp, n_groups, warps):
        _group_sums(W, column_sums, q, lane)
    first_step = first[0]
    cuda.syncthreads()
    for s in range(starts.shape[0] - 1):
        lo, hi = starts[s], starts[s + 1]
        batch = hi - lo
        # 1. a warp per sample: its lanes share out its non-zero pixels, each summing W[k, j] p_ij for every class
        #    in registers, then the warp adds up the lanes' sums; the groups it has pixels in; its softmax
        for k in range(MAX_CLASSES):
            if k < n_classes:
                total = _warp_sum(column_sums[lane, k] if lane < n_groups else zero)
                if lane == 0:  # the one lane that reads them
                    const[k] = c * total + b[0, k]
        for i in range(warp, batch, warps):
            row = order[lo + i]
            label = labels[row]  # loaded now, ready when the logits are
            z = cuda.local.array(MAX_CLASSES, W.dtype)
            groups = _warp_logits(z, row, lane, indptr, indices, values, Wt, zero)
            if lane < n_groups and (groups >> lane) & 1:
                cuda.atomic.or_(masks, (i // WORD, lane), np.uint32(1 << (i % WORD)))
            if lane == 0:
                rows[i] = row
                for k in range(MAX_CLASSES):
                    if k < n_classes:
                        g[i, k] = a * z[k] + const[k]
                sample_loss[i], best = softmax_gradient(g[i, :n_classes], label, batch)
                sample_correct[i] = best == label
        cuda.syncthreads()
        # 2. every warp: the bias gradient db_k = sum_i g_ik (also the weights' rank-one term); the last warp: the
        #    step's loss and correct count
        for k in range(MAX_CLASSES):
            if k < n_classes:
                total = _warp_sum(_pair(g[:, k], lane, batch, zero))
                if lane == 0:
                    db[k] = total
        cuda.syncwarp(FULL_WARP)
        if warp == warps - 1:
            step_loss = _warp_sum(_pair(sample_loss, lane, batch, 0.0))
            step_correct = _warp_sum(_pair(sample_correct, lane, batch, 0))
            if lane == 0:
                loss[s], correct[s] = step_loss, step_correct
        # 3. a warp per group of 32 pixels, a lane per pixel: the group's samples from its masks, lowest first, each
        #    one pixel row read by the whole warp; then the SGD update and the group's new column sums
        for q in range(warp, n_groups, warps):
            d = q * WORD + lane
            inside = d < n_pixels
            column = min(d, n_pixels - 1)
            grad = cuda.local.array(MAX_CLASSES, W.dtype)
            for k in range(MAX_CLASSES):
                grad[k] = zero
            for word in range(MASK_WORDS):
                bits = masks[word, q]  # the group's samples: bit t for sample 32 word + t
                while bits:  # LOADS_IN_FLIGHT samples at a time, every load issued before any is used
                    pixels = cuda.local.array(LOADS_IN_FLIGHT, dense.dtype)
                    taken = bits  # walked twice: to load, then to add up (cheaper than keeping the samples)
                    for u in range(LOADS_IN_FLIGHT):
                        if bits:
                            pixels[u] = dense[rows[word * WORD + cuda.ffs(bits) - 1], column]
                            bits &= bits - 1
                    for u in range(LOADS_IN_FLIGHT):
                        if taken != bits:
                            i = word * WORD + cuda.ffs(taken) - 1
                            taken &= taken - 1
                            if inside and pixels[u] != 0:
                                _accumulate(grad, g, i, pixels[u], n_classes)
            cuda.syncwarp(FULL_WARP)  # every lane has read the masks
            if lane < MASK_WORDS:
                masks[lane, q] = 0  # ready for the next step
            for k in range(MAX_CLASSES):
                if k < n_classes and inside:
                    sgd_step(W, bufW, k, d, a * grad[k] + c * db[k], lr, weight_decay, first_step, momentum,
                             one_minus_dampening, nesterov)  # fmt: skip
                    Wt[d, k] = W[k, d]
            _group_sums(W, column_sums, q, lane)
        if warp == 0 and lane < n_classes:  # the bias, a lane per class
            sgd_step(b, bufb, 0, lane, db[lane], lr, weight_decay, first_step, momentum, one_minus_dampening,
                     nesterov)  # fmt: skip
        first_step = False
        cuda.syncthreads()
    if tid == 0 and starts.shape[0] > 1:
        first[0] = False


@cuda.jit(device=True, inline=True)
def _accumulate(sums, rows, i, p, n_classes):
    """``sums[k] += rows[i, k] p`` for every class ``k``: a thread's accumulators, kept in registers (the loop over
    them has a constant length, so it unrolls). Both sums of the sparse kernel: its logits (``rows`` = Wt, ``i``
    a pixel) and its gradient (``rows`` = g, ``i`` a sample)."""
    for k in range(MAX_CLASSES):
        if k < n_classes:
            sums[k] += rows[i, k] * p


@cuda.jit(device=True, inline=True)
def _warp_logits(z, row, lane, indptr, indices, values, Wt, zero):
    """Sample ``row``'s logits before the constants, ``z[k] = sum_j Wt[j, k] p_j`` over its non-zero pixels
    ``j``, by one warp, in every lane: lane ``l`` takes the pixels ``l, l + 32, ...`` of the row
    (:data:`LOADS_IN_FLIGHT` at a time, every load issued before any is used), then :func:`_warp_sum` adds up the
    lanes' sums. Returns the groups of 32 pixels the row has a pixel in, as the bits of an int64 (bit ``q`` for
    group ``q``)."""
    n_classes = Wt.shape[1]
    for k in range(MAX_CLASSES):
        z[k] = zero
    groups = 0
    end = indptr[row + 1]
    for j in range(indptr[row] + lane, end, LOADS_IN_FLIGHT * WORD):
        cols = cuda.local.array(LOADS_IN_FLIGHT, indices.dtype)
        pixels = cuda.local.array(LOADS_IN_FLIGHT, values.dtype)
        for u in range(LOADS_IN_FLIGHT):  # past the row's end, its last pixel again: no branch between the loads
            at = min(j + u * WORD, end - 1)
            cols[u], pixels[u] = indices[at], values[at]
        for u in range(LOADS_IN_FLIGHT):
            if j + u * WORD < end:
                groups |= _group_bit(cols[u])
                _accumulate(z, Wt, cols[u], pixels[u], n_classes)
    for k in range(MAX_CLASSES):
        if k < n_classes:
            z[k] = _warp_sum(z[k])
    return _warp_or(groups)


@cuda.jit(device=True, inline=True)
def _group_bit(col):
    """Bit ``q`` of an int64 for pixel ``col`` of group ``q`` (an int64: a uint16 shift would lose bits 16 up). Past
    the 64th group the bits repeat, which only the grid kernel's wider images reach, and it ignores them."""
    return 1 << ((int64(col) // WORD) & 63)


@cuda.jit(device=True, inline=True)
def _warp_sum(value):
    """The sum of ``value`` over the 32 lanes of a warp, in every lane: a butterfly, each lane adding the value of
    lane ``lane ^ 16``, then ``lane ^ 8``, down to ``lane ^ 1``. The two lanes of a pair add the same two numbers,
    so every lane ends with the same bits, and the order is the lanes', so every run too."""
    offset = WORD // 2
    while offset:
        value += cuda.shfl_xor_sync(FULL_WARP, value, offset)
        offset //= 2
    return value


@cuda.jit(device=True, inline=True)
def _warp_or(bits):
    """The bitwise OR of ``bits`` over the 32 lanes of a warp, in every lane (a butterfly as :func:`_warp_sum`)."""
    offset = WORD // 2
    while offset:
        bits |= cuda.shfl_xor_sync(FULL_WARP, bits, offset)
        offset //= 2
    return bits


@cuda.jit(device=True, inline=True)
def _pair(column, lane, batch, zero):
    """Lane ``lane``'s share of a sum over a batch of at most 64: ``column[lane] + column[lane + 32]``, each term
    ``zero`` past ``batch``."""
    first = column[lane] if lane < batch else zero
    return first + column[lane + WORD] if lane + WORD < batch else first


@cuda.jit(device=True, inline=True)
def _group_sums(W, column_sums, q, lane):
    """``column_sums[q, k] = sum of W[k, d]`` over group ``q``'s pixels ``d = 32 q + lane``, by one warp."""
    n_classes, n_pixels = W.shape
    d = q * WORD + lane
    for k in range(MAX_CLASSES):
        if k < n_classes:
            total = _warp_sum(W[k, d] if d < n_pixels else W.dtype.type(0))
            if lane == 0:
                column_sums[q, k] = total


@cuda.jit
def train_steps_grid(dense, indptr, indices, values, labels, order, starts, a, c, W, b, bufW, bufb, first, lr,
                     momentum, one_minus_dampening, weight_decay, nesterov, chunk, Wt, g, sample_loss,
                     sample_correct, gpart, lpart, cpart, db, const, partial, loss, correct):  # fmt: skip
    """The grid kernel: SGD steps on ``order[starts[s]:starts[s+1]]`` for each step ``s``, over a whole
    cooperative grid (every block resident at once), with a grid-wide barrier between the phases.

    Arrays as for the sparse kernel; ``chunk`` (:data:`CHUNK`) samples a chunk. Scratch in global memory: Wt
    (D, K) and g (B, K) in the weights' dtype, sample_loss (B,) float64, sample_correct (B,) int64; gpart
    (C, K, D + 1) in the weights' dtype, lpart (C,) float64 and cpart (C,) int64, a row per chunk; db, const (K,)
    and partial (K * 32,). Out: loss (S,) float64 and correct (S,) int64. Every sum runs in an order fixed by the
    data and ``chunk``, whatever the grid's size.
    """
    grid = cuda.cg.this_grid()
    at, stride = cuda.grid(1), cuda.gridsize(1)
    tid, threads, leader = cuda.threadIdx.x, cuda.blockDim.x, cuda.blockIdx.x == 0
    lane = tid % WORD
    n_classes, n_pixels = W.shape
    zero = a - a
    _transpose(W, Wt, at, stride)
    if leader:  # block 0 folds the constants
        _fold_constants(W, b, c, partial, const, tid, threads)
    grid.sync()
    for s in range(starts.shape[0] - 1):
        lo, hi = starts[s], starts[s + 1]
        batch = hi - lo
        n_chunks = (batch + chunk - 1) // chunk
        # 1. a warp per sample, as in the sparse kernel: its logits over its non-zero pixels, then one lane does its
        #    softmax, loss and prediction, with g <- (p - onehot(y)) / B
        for i in range(at // WORD, batch, stride // WORD):
            row = order[lo + i]
            label = labels[row]
            z = cuda.local.array(MAX_CLASSES, W.dtype)
            _warp_logits(z, row, lane, indptr, indices, values, Wt, zero)
            if lane == 0:
                for k in range(MAX_CLASSES):
                    if k < n_classes:
                        g[i, k] = a * z[k] + const[k]
                sample_loss[i], best = softmax_gradient(g[i], label, batch)
                sample_correct[i] = best == label
        grid.sync()
        # 2. a thread per (chunk, pixel): the chunk's share of the gradient, in sample order; pixel D stands for the
        #    bias (its value is 1) and also sums the chunk's losses and correct predictions
        for tile in range(at, n_chunks * (n_pixels + 1), stride):
            part, d = tile // (n_pixels + 1), tile % (n_pixels + 1)
            first_i, last_i = part * chunk, min(batch, (part + 1) * chunk)
            acc = cuda.local.array(MAX_CLASSES, W.dtype)
            for k in range(MAX_CLASSES):
                acc[k] = zero
            if d < n_pixels:
                for i in range(first_i, last_i, LOADS_IN_FLIGHT):  # every load issued before any is used
                    pixels = cuda.local.array(LOADS_IN_FLIGHT, dense.dtype)
                    for u in range(LOADS_IN_FLIGHT):  # past the chunk, its last sample again: no branch between
                        pixels[u] = dense[order[lo + min(i + u, last_i - 1)], d]
                    for u in range(LOADS_IN_FLIGHT):
                        if i + u < last_i and pixels[u] != 0:
                            _accumulate(acc, g, i + u, pixels[u], n_classes)
            else:
                for i in range(first_i, last_i):
                    for k in range(MAX_CLASSES):
                        if k < n_classes:
                            acc[k] += g[i, k]
                lpart[part], cpart[part] = _sum_in_order(sample_loss, sample_correct, first_i, last_i)
            for k in range(MAX_CLASSES):
                if k < n_classes:
                    gpart[part, k, d] = acc[k]
        grid.sync()
        # 3. the bias gradient and the step's totals, summed over the chunks in order
        for k in range(at, n_classes, stride):
            total = zero
            for part in range(n_chunks):
                total += gpart[part, k, n_pixels]
            db[k] = total
        if at == 0:
            loss[s], correct[s] = _sum_in_order(lpart, cpart, 0, n_chunks)
        grid.sync()
        # 4. a thread per (class, pixel): its gradient over the chunks in order, then the SGD update (K times the
        #    threads a thread per pixel would keep busy, each with a K-th of the loads in a row); the bias likewise
        first_step = first[0]
        for pair in range(at, n_classes * n_pixels, stride):
            k, d = pair // n_pixels, pair % n_pixels
            total = zero
            for part in range(n_chunks):
                total += gpart[part, k, d]
            sgd_step(W, bufW, k, d, a * total + c * db[k], lr, weight_decay, first_step, momentum,
                     one_minus_dampening, nesterov)  # fmt: skip
            Wt[d, k] = W[k, d]
        for k in range(at, n_classes, stride):
            sgd_step(b, bufb, 0, k, db[k], lr, weight_decay, first_step, momentum, one_minus_dampening, nesterov)
        grid.sync()
        # 5. the folded constants of the new weights, for the next step
        if at == 0:
            first[0] = False
        if leader:
            _fold_constants(W, b, c, partial, const, tid, threads)
        grid.sync()


@cuda.jit(device=True, inline=True)
def _sum_in_order(losses, corrects, lo, hi):
    """``(sum of losses[lo:hi], sum of corrects[lo:hi])``, added in index order (float64 and int64)."""
    total_loss, total_correct = 0.0, 0
    for i in range(lo, hi):
        total_loss += losses[i]
        total_correct += corrects[i]
    return total_loss, total_correct


@cuda.jit(device=True, inline=True)
def _transpose(W, Wt, at, stride):
    """``Wt[d, k] = W[k, d]``, the entries shared out ``at, at + stride, ...`` (a block's or a grid's threads)."""
    n_classes, n_pixels = W.shape
    for entry in range(at, n_classes * n_pixels, stride):
        Wt[entry % n_pixels, entry // n_pixels] = W[entry // n_pixels, entry % n_pixels]


@cuda.jit(device=True, inline=True)
def _fold_constants(W, b, c, partial, const, tid, threads):
    """``const[k] = c * sum_d W[k, d] + b[k]`` in a fixed order, by one block: 32 partial sums per class over
    ``d = j, j + 32, ...``, then their sum in order of ``j``. Ends with a barrier, as it starts after one."""
    n_classes, n_pixels = W.shape
    for pair in range(tid, n_classes * WORD, threads):
        k, part = pair // WORD, pair % WORD
        total = c - c
        for d in range(part, n_pixels, WORD):
            total += W[k, d]
        partial[pair] = total
    cuda.syncthreads()
    for k in range(tid, n_classes, threads):
        total = c - c
        for part in range(WORD):
            total += partial[k * WORD + part]
        const[k] = c * total + b[0, k]
    cuda.syncthreads()


@cuda.jit
def evaluate(images, labels, a, c, W, b, loss, predictions):
    """One thread per sample: its loss ``-log p[label]`` into ``loss`` (float64) and its most probable class (the
    first of equals, as ``argmax``) into ``predictions``. The softmax runs in one pass over the classes: the
    running sum is rescaled whenever the running maximum grows."""
    i = cuda.grid(1)
    if i >= images.shape[0]:
        return
    n_classes, n_pixels = W.shape
    zero, one = a - a, W.dtype.type(1)  # not 0 and 1: an int literal would make float32 arithmetic float64
    m, best, total, z_label = zero, 0, zero, zero
    for k in range(n_classes):
        dot, col = zero, zero
        for d in range(n_pixels):
            dot += W[k, d] * images[i, d]
            col += W[k, d]
        zk = a * dot + c * col + b[0, k]
        if k == labels[i]:
            z_label = zk
        if k == 0:
            m, total = zk, one
        elif zk > m:
            total = total * math.exp(m - zk) + one
            m, best = zk, k
        else:
            total += math.exp(zk - m)
    loss[i] = m + math.log(total) - z_label
    predictions[i] = best
