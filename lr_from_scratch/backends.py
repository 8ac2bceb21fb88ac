"""Backends: the model's math behind one small interface, so one training loop drives them all.

A backend owns the parameters, the optimizer and the data (on its device). The loop in :mod:`.trainer` only
asks it to run a few steps, to evaluate, and to hand over or take back its state as NumPy arrays.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from .config import TrainConfig
from .data import SparseRows, Splits, batch_starts
from .errors import ConfigError
from .metrics import evaluate
from .model import SoftmaxRegression, initial_params
from .optim import SGD, momentum_buffer_key


class Backend(Protocol):
    """What the training loop needs from an implementation."""

    #: How many batches one :meth:`run_steps` call may take (the loop checks for Ctrl-C in between).
    steps_per_call: int
    #: The number of training samples, and whether there is a validation split to evaluate.
    n_train: int
    has_val: bool
    #: What the backend reports about itself in ``metrics.json`` (compile time, device, ...).
    info: dict

    def run_steps(self, order: np.ndarray, batches: list[slice], lr: float) -> tuple[float, int]:
        """Train on ``order[s]`` for each slice ``s`` in turn; return (sum of batch loss x batch size, correct)."""

    def evaluate(self, split: str) -> tuple[float, float]:
        """``(mean loss, accuracy)`` on ``"val"`` or ``"test"``."""

    def params(self) -> tuple[np.ndarray, np.ndarray]:
        """Copies of ``(weight (K, D), bias (K,))``."""

    def state(self) -> dict[str, np.ndarray]:
        """Parameters and optimizer buffers, enough to continue exactly."""

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        """Restore what :meth:`state` returned; given just ``weight`` and ``bias``, the momentum buffers empty."""


class NumpyBackend:
    """The readable reference: :class:`SoftmaxRegression` and :class:`SGD`, one batch at a time, on scaled
    float arrays ``(x (n, D), y (n,))``."""

    steps_per_call = 8

    def __init__(self, weight, bias, config: TrainConfig, train, val=None, test=None):
        self.model = SoftmaxRegression(weight, bias)
        self.data = {"train": train, "val": val, "test": test}
        self.n_train, self.has_val, self.info = len(train[1]), val is not None, {}
        self.optimizer = SGD(
            [self.model.weight, self.model.bias],
            lr=config.lr,
            momentum=config.momentum,
            dampening=config.dampening,
            weight_decay=config.weight_decay,
            nesterov=config.nesterov,
        )

    def run_steps(self, order, batches, lr):
        x, y = self.data["train"]
        self.optimizer.lr = lr
        loss_sum, correct = 0.0, 0
        for batch in batches:
            idx = order[batch]
            loss, n_correct, dw, db = self.model.forward_backward(x[idx], y[idx])
            self.optimizer.step([dw, db])
            loss_sum += loss * len(idx)
            correct += n_correct
        return loss_sum, correct

    def evaluate(self, split):
        x, y = self.data[split]
        return evaluate(self.model.weight, self.model.bias, x, y)

    def params(self):
        return self.model.weight.copy(), self.model.bias.copy()

    def state(self):
        return {"weight": self.model.weight.copy(), "bias": self.model.bias.copy(), **self.optimizer.state_dict()}

    def load_state(self, state):
        self.model.weight[...] = state["weight"]
        self.model.bias[...] = state["bias"]
        self.optimizer.load_state_dict(state)


class NaiveNumbaBackend(NumpyBackend):
    """Kernel 1 (:mod:`.kernels.naive`): the reference's steps ported to Numba as they are, on the same arrays,
    the same model and the same optimizer state as :class:`NumpyBackend`."""

    steps_per_call = 64

    def __init__(self, weight, bias, config: TrainConfig, train, val=None, test=None):
        from .kernels import naive

        super().__init__(weight, bias, config, train, val, test)
        self.kernel = naive.train_steps
        seconds, self.compiled = naive.warm_up(config.dtype)
        self.info = {"compile_seconds": seconds}

    def run_steps(self, order, batches, lr):
        x, y = self.data["train"]
        W, b, sgd = self.model.weight, self.model.bias, self.optimizer
        first = np.array([sgd.buffers[0] is None])
        buffers = [np.zeros_like(W), np.zeros_like(b)] if first[0] else sgd.buffers
        t = W.dtype.type
        options = (t(sgd.momentum), t(sgd.dampening), t(sgd.weight_decay), bool(sgd.nesterov))
        loss, correct = self.kernel(x, y, order, batch_starts(batches), W, b, *buffers, first, t(lr), *options)
        if sgd.momentum:  # without momentum SGD keeps no buffers
            sgd.buffers = buffers
        return float(loss), int(correct)


class LayerBackend:
    """What the compiled backends share: a layer that keeps its own weights and SGD state (the kernels' wrapper),
    the data in the form its kernels read, and the state in the shared format.

    ``warmed`` is what the kernels' ``warm_up`` returned: ``(seconds, compiled)``, kept as ``info`` and
    ``compiled``, so that no epoch's timing includes the compilation.
    """

    def __init__(self, layer, warmed: tuple[float, bool], train, val=None, test=None):
        self.layer = layer
        seconds, self.compiled = warmed
        self.info = {"compile_seconds": seconds}
        self.data = {"train": train, "val": val, "test": test}
        self.n_train, self.has_val = train[1].shape[0], val is not None

    def run_steps(self, order, batches, lr):
        images, labels = self.data["train"]
        return self.layer.train_steps(images, labels, self._order(order), batches, lr)

    def _order(self, order):
        """The epoch's order as the kernels read it."""
        return order

    def evaluate(self, split):
        images, labels = self.data[split]
        loss, accuracy, _ = self.layer.evaluate(images, labels)
        return loss, accuracy

    def params(self):
        return self.layer.params()

    def state(self):
        weight, bias = self.layer.params()
        buffers = self.layer.buffers()
        state = {"weight": weight, "bias": bias}
        if buffers is not None:
            state.update({momentum_buffer_key(i): buffer for i, buffer in enumerate(buffers)})
        return state

    def load_state(self, state):
        self.layer.set_params(state["weight"], state["bias"])
        keys = [momentum_buffer_key(i) for i in range(2)]
        self.layer.set_buffers(tuple(state[k] for k in keys) if keys[0] in state else None)


class NumbaBackend(LayerBackend):
    """The fast path: :mod:`.kernels.fused` on the images' non-zero pixels, normalisation folded in.

    ``train`` and friends are ``(rows, labels)`` with ``rows`` a :class:`~lr_from_scratch.data.SparseRows` of
    raw values; the model sees ``x = a * value + c``. The kernels are compiled (or loaded from Numba's cache)
    here, so no epoch's timing includes it: ``info`` says how long that took, ``compiled`` whether it compiled.
    """

    steps_per_call = 64

    def __init__(self, weight, bias, config: TrainConfig, a: float, c: float, train, val=None, test=None):
        from .kernels.fused import FoldedLinear, warm_up

        warmed = warm_up(config.dtype, train[0].values.dtype)
        super().__init__(FoldedLinear(weight, bias, a, c, *_sgd_options(config)), warmed, train, val, test)


def require_cuda(flags: bool = True) -> None:
    """Refuse the CUDA backend, in one line, where Numba sees no GPU; ``flags``: say it in the command line's terms
    (``--backend cuda``), else in the estimator's (``backend='cuda'``)."""
    from .kernels import cuda as kernels

    if not kernels.available():
        cuda, numba = ("--backend cuda", "--backend numba") if flags else ("backend='cuda'", "backend='numba'")
        raise ConfigError(
            f"{cuda}: Numba sees no CUDA GPU here (numba.cuda.is_available() is False); use {numba}, or set "
            "NUMBA_ENABLE_CUDASIM=1 to run the kernels in Numba's simulator (slowly)"
        )


class CudaBackend(LayerBackend):
    """The from-scratch GPU path: :mod:`.kernels.cuda`, the images on the device as they are (uint8 pixels, or
    the estimator's floats) and, for training, as CSR rows; the normalisation folded in, every step of an epoch
    in one launch.

    ``train`` and friends are ``(images (n, D), labels (n,))`` NumPy arrays, copied to the device once.
    """

    steps_per_call = 1 << 30  # an epoch a launch

    def __init__(self, weight, bias, config: TrainConfig, a: float, c: float, train, val=None, test=None):
        from .kernels import cuda as kernels

        require_cuda()
        warmed = kernels.warm_up(config.dtype, train[0].dtype)
        from numba import cuda

        on_device = [  # the training images also as CSR rows, for the sparse and grid kernels
            None if part is None else (kernels.DeviceImages.from_host(part[0], sparse=name == "train"),
                                       cuda.to_device(np.ascontiguousarray(part[1])))
            for name, part in (("train", train), ("val", val), ("test", test))
        ]  # fmt: skip
        super().__init__(kernels.CudaLinear(weight, bias, a, c, *_sgd_options(config)), warmed, *on_device)
        reason = kernels.grid_unavailable()
        if reason:
            self.info["cuda_grid_unavailable"] = reason
        self._on_device = (None, None)  # (the epoch's order, its copy on the device)

    def _order(self, order):
        if self._on_device[0] is not order:  # a new epoch: one copy of its order
            from numba import cuda

            self._on_device = (order, cuda.to_device(np.ascontiguousarray(order)))
        return self._on_device[1]


def _folding(splits: Splits) -> tuple[float, float]:
    """``(a, c)`` with ``a * pixel + c = (pixel / 255 - mean) / std``: the normalisation the compiled kernels
    fold into the weights, so that the images stay uint8."""
    return 1.0 / (255.0 * splits.std), -splits.mean / splits.std


def _sgd_options(config: TrainConfig) -> tuple:
    """``(momentum, dampening, weight_decay, nesterov)``: what a layer's SGD takes, as :class:`SGD` does."""
    return config.momentum, config.dampening, config.weight_decay, config.nesterov


def array_backend(config: TrainConfig, weight, bias, train, val=None, test=None):
    """A backend of kind ``config.backend`` over features ``(x (n, D) float, y (n,) int)``, taken as they are (no
    scaling): what the scikit-learn estimator trains. The Numba backend also takes ``x`` as ``scipy.sparse``."""
    if config.backend == "cuda":
        return CudaBackend(weight, bias, config, 1.0, 0.0, train, val, test)
    if config.backend == "numba":

        def rows(part):
            return None if part is None else (SparseRows.from_features(part[0]), part[1])

        return NumbaBackend(weight, bias, config, 1.0, 0.0, rows(train), rows(val), rows(test))
    kind = NaiveNumbaBackend if config.backend == "numba-naive" else NumpyBackend
    return kind(weight, bias, config, train, val, test)


def make_backend(config: TrainConfig, splits: Splits):
    """A freshly initialised backend of kind ``config.backend`` over ``splits``, ready to train (its kernels
    compiled); every kind starts from the same initial weights (:func:`~lr_from_scratch.model.initial_params`)."""
    weight, bias = initial_params(config, splits.n_features, splits.n_classes)
    parts = (splits.train, splits.val, splits.test)
    if config.backend == "cuda":
        images = [None if p is None else (p.images, p.labels) for p in parts]
        return CudaBackend(weight, bias, config, *_folding(splits), *images)
    if config.backend == "numba":
        from .kernels.llvm import LANES

        if splits.n_classes > LANES:
            raise ConfigError(
                f"--dataset {config.dataset} has {splits.n_classes} classes; --backend numba takes at most {LANES} "
                "(one vector register of lanes): use --backend numpy"
            )
        rows = [None if p is None else (SparseRows.from_dense(p.images), p.labels) for p in parts]
        return NumbaBackend(weight, bias, config, *_folding(splits), *rows)
    return array_backend(config, weight, bias, *[None if p is None else splits.scaled(p, config.dtype) for p in parts])
