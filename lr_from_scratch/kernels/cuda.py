"""The CUDA kernels (Numba's CUDA target, ``numba-cuda``): every SGD step of a call in one launch, and inference.

A step at batch 64 is about 1M multiply-adds, a few microseconds of one GPU block's time, while a kernel launch
and a synchronisation cost about as much again. So the training kernel is *one* block that carries the weights
across all the steps it is given (an epoch by default): no launch, no host round trip between steps. Inside a
step its threads take turns at the work, with a barrier (``syncthreads``) between the phases:

1. logits: thread ``t`` computes ``z[i, k] = a W_k . p_i + c sum_d W[k, d] + b_k`` for some pairs ``(i, k)``
   (the normalisation folded in, as on the CPU: the images stay uint8);
2. softmax: thread ``i`` turns its sample's logits into ``g[i] = (p_i - onehot(y_i)) / B``, its loss and its
   prediction;
3. gradient and update: thread ``t`` owns some pixels ``d`` and, for each class, sums ``a g[i, k] p_i[d]`` over
   the batch (plus the rank-one ``c db_k``), then applies PyTorch's SGD rule to ``W[k, d]`` at once; the first
   threads do the bias. Every sum runs in a fixed order, so results do not depend on scheduling.

Under ``NUMBA_ENABLE_CUDASIM=1`` Numba runs the same kernels as Python threads on the CPU: slowly, but exactly,
which is how the tests check them without a GPU (``tests/test_cuda.py``).
"""

from __future__ import annotations

import math

import numpy as np
from numba import config, cuda

from ..data.pipeline import batch_starts
from .llvm import compile_report

#: Threads of the training block, and of each inference block. The simulator runs every thread as a Python
#: thread, so it gets few.
THREADS = 32 if config.ENABLE_CUDASIM else 256


def available() -> bool:
    """Whether a CUDA GPU is there (or Numba's simulator stands in for one)."""
    return cuda.is_available()


@cuda.jit
def train_steps(images, labels, order, starts, a, c, W, b, bufW, bufb, first, lr, momentum, one_minus_dampening,
                weight_decay, nesterov, g, db, sample_loss, sample_correct, loss, correct):  # fmt: skip
    """SGD steps on ``order[starts[s]:starts[s+1]]`` for each step ``s``, in one block.

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
            m, best = g[i, 0], 0
            for k in range(1, n_classes):
                if g[i, k] > m:
                    m, best = g[i, k], k
            total = zero
            for k in range(n_classes):
                total += math.exp(g[i, k] - m)
            sample_loss[i] = m + math.log(total) - g[i, label]
            sample_correct[i] = best == label
            for k in range(n_classes):
                g[i, k] = (math.exp(g[i, k] - m) / total - (k == label)) / batch
        cuda.syncthreads()
        for k in range(tid, n_classes, threads):  # the bias gradient, also the weights' rank-one term
            db[k] = zero
            for i in range(batch):
                db[k] += g[i, k]
        if tid == 0:  # the step's loss and correct count, in sample order
            step_loss, step_correct = 0.0, 0
            for i in range(batch):
                step_loss += sample_loss[i]
                step_correct += sample_correct[i]
            loss[s], correct[s] = step_loss, step_correct
        cuda.syncthreads()
        # 3. gradient and SGD update: a thread per pixel for the weights, the first threads for the bias
        first_step = first[0]
        for d in range(tid, n_pixels, threads):
            for k in range(n_classes):
                grad = zero
                for i in range(batch):
                    grad += g[i, k] * images[order[lo + i], d]
                grad = a * grad + c * db[k] + weight_decay * W[k, d]
                W[k, d] -= lr * _sgd_direction(bufW, k, d, grad, first_step, momentum, one_minus_dampening, nesterov)
        for k in range(tid, n_classes, threads):
            grad = db[k] + weight_decay * b[0, k]
            b[0, k] -= lr * _sgd_direction(bufb, 0, k, grad, first_step, momentum, one_minus_dampening, nesterov)
        cuda.syncthreads()
        if tid == 0:
            first[0] = False
        cuda.syncthreads()


@cuda.jit(device=True, inline=True)
def _sgd_direction(buf, row, col, grad, first_step, momentum, one_minus_dampening, nesterov):
    """PyTorch's SGD direction for one parameter with gradient ``grad`` (weight decay included), updating its
    momentum buffer ``buf[row, col]``: the buffer starts as the gradient, then ``momentum b + (1 - dampening) g``;
    the direction is ``g + momentum b`` (Nesterov) or ``b``, or just ``g`` without momentum."""
    if momentum == 0:
        return grad
    velocity = grad if first_step else momentum * buf[row, col] + one_minus_dampening * grad
    buf[row, col] = velocity
    return grad + momentum * velocity if nesterov else velocity


@cuda.jit
def evaluate(images, labels, a, c, W, b, loss, predictions):
    """One thread per sample: its loss ``-log p[label]`` into ``loss`` (float64) and its most probable class (the
    first of equals, as ``argmax``) into ``predictions``. The softmax runs in one pass over the classes: the
    running sum is rescaled whenever the running maximum grows."""
    i = cuda.grid(1)
    if i >= images.shape[0]:
        return
    n_classes, n_pixels = W.shape
    zero = a - a
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
            m, total = zk, zero + 1
        elif zk > m:
            total = total * math.exp(m - zk) + 1
            m, best = zk, k
        else:
            total += math.exp(zk - m)
    loss[i] = m + math.log(total) - z_label
    predictions[i] = best


class CudaLinear:
    """A (K, D) linear layer and its SGD state on the GPU, on inputs ``x = a * values + c``: the interface of
    :class:`~lr_from_scratch.kernels.fused.FoldedLinear` (``nn.Linear``'s layout), its arrays on the device."""

    def __init__(self, weight: np.ndarray, bias: np.ndarray, a: float, c: float, momentum: float = 0.0,
                 dampening: float = 0.0, weight_decay: float = 0.0, nesterov: bool = False):  # fmt: skip
        self.dtype = weight.dtype
        t = self.dtype.type
        self.a, self.c = t(a), t(c)
        self.options = (t(momentum), t(1 - dampening), t(weight_decay), bool(nesterov))
        self.W, self.b = cuda.to_device(weight), cuda.to_device(bias.reshape(1, -1))
        self.bufW, self.bufb = cuda.to_device(np.zeros_like(weight)), cuda.to_device(np.zeros((1, len(bias)), t))
        self.first = cuda.to_device(np.ones(1, dtype=np.bool_))

    def params(self) -> tuple[np.ndarray, np.ndarray]:
        return self.W.copy_to_host(), self.b.copy_to_host()[0]

    def set_params(self, weight: np.ndarray, bias: np.ndarray) -> None:
        self.W.copy_to_device(np.ascontiguousarray(weight, dtype=self.dtype))
        self.b.copy_to_device(np.asarray(bias, dtype=self.dtype).reshape(1, -1))

    def buffers(self) -> tuple[np.ndarray, np.ndarray] | None:
        if self.first.copy_to_host()[0]:
            return None
        return self.bufW.copy_to_host(), self.bufb.copy_to_host()[0]

    def set_buffers(self, buffers: tuple[np.ndarray, np.ndarray] | None) -> None:
        self.first.copy_to_device(np.array([buffers is None]))
        weight_buffer, bias_buffer = (np.zeros(self.W.shape), np.zeros(self.b.shape)) if buffers is None else buffers
        self.bufW.copy_to_device(np.ascontiguousarray(weight_buffer, dtype=self.dtype))
        self.bufb.copy_to_device(np.asarray(bias_buffer, dtype=self.dtype).reshape(1, -1))

    def train_steps(self, images, labels, order, batches: list[slice], lr: float) -> tuple[float, int]:
        """SGD steps on the batches ``order[s]`` for each slice ``s`` of ``batches`` (``images``, ``labels`` and
        ``order`` on the device), all in one launch. Returns (loss sum, correct) over the steps' samples."""
        starts = batch_starts(batches)
        n_steps, largest = len(starts) - 1, int(np.diff(starts).max())
        scratch = (cuda.device_array((largest, self.W.shape[0]), dtype=self.dtype),
                   cuda.device_array(self.W.shape[0], dtype=self.dtype), cuda.device_array(largest, dtype=np.float64),
                   cuda.device_array(largest, dtype=np.int64))  # fmt: skip
        loss, correct = cuda.device_array(n_steps, dtype=np.float64), cuda.device_array(n_steps, dtype=np.int64)
        train_steps[1, THREADS](images, labels, order, cuda.to_device(starts), self.a, self.c, self.W, self.b,
                                self.bufW, self.bufb, self.first, self.dtype.type(lr), *self.options, *scratch, loss,
                                correct)  # fmt: skip
        return float(loss.copy_to_host().sum()), int(correct.copy_to_host().sum())

    def evaluate(self, images, labels) -> tuple[float, float, np.ndarray]:
        """``(mean loss, accuracy, predictions)`` over every row (``images`` and ``labels`` on the device)."""
        n = images.shape[0]
        loss, predictions = cuda.device_array(n, dtype=np.float64), cuda.device_array(n, dtype=np.int64)
        blocks = (n + THREADS - 1) // THREADS
        evaluate[blocks, THREADS](images, labels, self.a, self.c, self.W, self.b, loss, predictions)
        predictions = predictions.copy_to_host()
        return float(loss.copy_to_host().sum()) / n, float((predictions == labels.copy_to_host()).mean()), predictions


def warm_up(dtype: str | np.dtype, values_dtype: str | np.dtype = np.uint8) -> tuple[float, bool]:
    """Compile the kernels for ``dtype`` weights and ``values_dtype`` images on a tiny problem, before anything is
    timed; returns ``(seconds, compiled)``."""

    def run():
        layer = CudaLinear(np.zeros((3, 4), dtype=dtype), np.zeros(3, dtype=dtype), 0.5, -0.1, 0.9, 0, 1e-4, True)
        images, labels = cuda.to_device(np.ones((4, 4), dtype=values_dtype)), cuda.to_device(np.arange(4) % 3)
        layer.train_steps(images, labels, cuda.to_device(np.arange(4)), [slice(0, 2), slice(2, 4)], 0.1)
        layer.evaluate(images, labels)

    return compile_report((train_steps, evaluate), run)
