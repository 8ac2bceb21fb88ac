"""The strongest peer found for the fused kernels: JAX, written the way a JAX user would, with the whole epoch
compiled. ``jax.jit`` compiles a function that runs ``lax.scan`` over the epoch's batches, each step
``jax.value_and_grad`` of the mean cross-entropy and PyTorch's SGD rule, on the scaled images resident on the
device. Same initial weights, batch order and SGD rule as every backend, so its trajectory compares too
(``tests/test_peers.py``). Needs ``pip install 'lr-from-scratch[peers]'``.
"""

from __future__ import annotations

import functools
import time

import numpy as np

from lr_from_scratch.config import TrainConfig
from lr_from_scratch.data import Splits, batch_starts
from lr_from_scratch.model import initial_params
from lr_from_scratch.optim import momentum_buffer_key


class JaxBackend:
    """The backend interface of :mod:`lr_from_scratch.backends` over JAX on its default device."""

    steps_per_call = 1 << 30  # a whole epoch per call: one compiled scan

    def __init__(self, config: TrainConfig, splits: Splits, device=None):
        """``device``: a JAX device (default: JAX's first); the data and the weights live there, and so the
        compiled steps run there."""
        import jax
        import jax.numpy as jnp

        jax.config.update("jax_enable_x64", True)  # float64 runs stay float64; every array here has its dtype
        self.jax, self.jnp, self.config = jax, jnp, config
        self.dtype = np.dtype(config.dtype)
        self.device = device or jax.devices()[0]
        put = functools.partial(jax.device_put, device=self.device)
        weight, bias = initial_params(config, splits.n_features, splits.n_classes)
        self.weights = (put(weight), put(bias))
        self.buffers = (jnp.zeros_like(self.weights[0]), jnp.zeros_like(self.weights[1]))
        self.started = put(False)
        parts = {"train": splits.train, "val": splits.val, "test": splits.test}
        self.data = {k: tuple(map(put, splits.scaled(p, self.dtype))) if p else None for k, p in parts.items()}
        self.n_train, self.has_val = len(splits.train), splits.val is not None
        self.info = {"jax_version": jax.__version__, "jax_device": str(self.device)}
        self._scan = jax.jit(self._epoch)
        self._evaluate = jax.jit(self._loss_and_correct)
        start = time.perf_counter()
        self._compile()
        self.info["compile_seconds"] = time.perf_counter() - start

    def _compile(self) -> None:
        """Compile the scans of an epoch (its full batches, and its short last one) before anything is timed: run
        them once on the current state and throw the results away."""
        x, y = self.data["train"]
        full, rest = divmod(self.n_train, self.config.batch_size)
        for shape in ((full, self.config.batch_size), (1, rest)):
            if shape[0] and shape[1]:
                idx = self.jax.device_put(np.zeros(shape, dtype=np.int64), self.device)
                lr = self.jax.device_put(np.zeros((), dtype=self.dtype), self.device)
                self.jax.block_until_ready(self._scan(self.weights, self.buffers, self.started, x, y, idx, lr))

    def _loss_and_correct(self, params, x, y):
        """(sum of losses, correct) of the linear model on ``x``: what the loss and the accuracy count."""
        jnp = self.jnp
        log_p = self.jax.nn.log_softmax(x @ params[0].T + params[1])
        return -jnp.take_along_axis(log_p, y[:, None], axis=1).sum(), (log_p.argmax(axis=1) == y).sum()

    def _epoch(self, params, buffers, started, x, y, batches, lr):
        """``lax.scan`` of the SGD step over ``batches`` (S, B) of sample indices; returns the new state and the
        loss sum and correct count of every step."""
        jax, jnp, c = self.jax, self.jnp, self.config

        def mean_loss(params, xb, yb):
            total, correct = self._loss_and_correct(params, xb, yb)
            return total / len(yb), (total, correct)

        def step(carry, idx):
            params, buffers, started = carry
            (_, (total, correct)), grads = jax.value_and_grad(mean_loss, has_aux=True)(params, x[idx], y[idx])
            new_params, new_buffers = [], []
            for p, g, buf in zip(params, grads, buffers, strict=True):  # torch.optim.SGD's rule
                g = g + c.weight_decay * p
                if c.momentum:
                    buf = jnp.where(started, c.momentum * buf + (1 - c.dampening) * g, g)
                    g = g + c.momentum * buf if c.nesterov else buf
                new_params.append(p - lr * g)
                new_buffers.append(buf)
            return (tuple(new_params), tuple(new_buffers), jnp.asarray(True)), (total, correct)

        return jax.lax.scan(step, (params, buffers, started), batches)

    def run_steps(self, order, batches, lr):
        x, y = self.data["train"]
        starts = batch_starts(batches)
        sizes = np.diff(starts)
        loss, correct = 0.0, 0
        lr = self.jax.device_put(np.asarray(lr, dtype=self.dtype), self.device)
        # Full batches in one scan; a short last batch in a scan of its own (its shape compiles once).
        for same in (sizes == sizes[0], sizes != sizes[0]):
            if same.any():
                idx = np.stack([order[s : s + n] for s, n in zip(starts[:-1][same], sizes[same], strict=True)])
                (self.weights, self.buffers, self.started), (totals, corrects) = self._scan(
                    self.weights, self.buffers, self.started, x, y, self.jax.device_put(idx, self.device), lr
                )
                # summed by NumPy: JAX's own .sum() compiles a reduction for each new length, inside the timing
                loss += float(np.asarray(totals, dtype=np.float64).sum())
                correct += int(np.asarray(corrects).sum())
        return loss, correct

    def evaluate(self, split):
        x, y = self.data[split]
        total, correct = self._evaluate(self.weights, x, y)
        return float(total) / len(y), int(correct) / len(y)

    def params(self):
        return tuple(np.asarray(p).copy() for p in self.weights)

    def state(self):
        weight, bias = self.params()
        state = {"weight": weight, "bias": bias}
        if bool(self.started) and self.config.momentum:
            state.update({momentum_buffer_key(i): np.asarray(b).copy() for i, b in enumerate(self.buffers)})
        return state

    def load_state(self, state):
        def put(array):
            return self.jax.device_put(np.asarray(array, dtype=self.dtype), self.device)

        self.weights = (put(state["weight"]), put(state["bias"]))
        started = momentum_buffer_key(0) in state
        self.buffers = tuple(put(state[momentum_buffer_key(i)] if started else np.zeros(p.shape)) for i, p in
                             enumerate(self.weights))  # fmt: skip
        self.started = self.jax.device_put(started, self.device)
