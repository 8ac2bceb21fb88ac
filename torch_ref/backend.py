"""The PyTorch training step behind the shared training loop's interface (``lr_from_scratch.backends``)."""

from __future__ import annotations

import logging
import time
import warnings

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Subset

from lr_from_scratch.config import TrainConfig
from lr_from_scratch.data import Splits
from lr_from_scratch.errors import ConfigError
from lr_from_scratch.model import initial_params
from lr_from_scratch.optim import momentum_buffer_key

from .compiled import CompiledStep
from .data import DTYPES, as_dataset, as_tensors, torchvision_parts
from .graphs import GraphedBlocks
from .model import from_arrays, to_arrays

LOADERS = ("tensor", "dataloader", "torchvision")


def _without_the_profiler_notice(record: logging.LogRecord) -> bool:
    """torch.compile notes, once and as a warning, that it leaves out the profiler's marks inside
    ``optimizer.step`` ("Profiler record function ... will be ignored", or "Profiler function ..." in some
    versions): nothing is wrong, so a user's run does not show it."""
    message = str(record.msg)
    return not (message.startswith("Profiler") and "will be ignored" in message)


for _logger in ("torch._dynamo.variables.ctx_manager", "torch._dynamo.variables.torch"):
    logging.getLogger(_logger).addFilter(_without_the_profiler_notice)
# TF32 stays off unless --tf32 (exact comparisons are the point here); torch.compile on a GPU that has TF32 says,
# at each compilation, to turn it on: the choice is made, and --tf32 is how to change it.
warnings.filterwarnings("ignore", message="TensorFloat32 tensor cores for float32 matrix multiplication available")


def check_cuda_graphs(cuda_graphs: bool, device: torch.device, loader: str, compile: bool) -> None:
    """CUDA graphs replay launches on a GPU over tensors that stay where they are: the tensor loader on CUDA,
    eager steps (``torch.compile``'s ``reduce-overhead`` mode is its own way to them)."""
    if not cuda_graphs:
        return
    if device.type != "cuda":
        raise ConfigError(f"--cuda-graphs needs a CUDA device, but this run is on the {device.type}: run it where "
                          "PyTorch sees a GPU, with --device cuda, or drop --cuda-graphs")  # fmt: skip
    if loader != "tensor":
        raise ConfigError(f"--cuda-graphs replays steps over tensors on the GPU, got --loader {loader}: drop --loader")
    if compile:
        raise ConfigError("--cuda-graphs records the eager step; --compile compiles it: give one of the two")


class TorchBackend:
    """``nn.CrossEntropyLoss`` and ``torch.optim.SGD`` on the textbook ``LogisticRegression``.

    ``loader="tensor"`` keeps every split on the device and slices batches by index (the fast path);
    ``loader="dataloader"`` is the textbook ``Dataset``/``DataLoader`` pipeline with per-sample transforms;
    ``loader="torchvision"`` is ``torchvision.datasets.MNIST`` with ``ToTensor`` and ``Normalize`` over the files
    in ``data_dir``. All visit the samples in the order the shared loop gives, so trajectories compare with
    lr_from_scratch. ``compile`` runs each step through ``torch.compile``; ``cuda_graphs`` records each call's
    block of steps as a CUDA graph and replays it (:mod:`.graphs`).
    The shared loop's schedule sets the learning rate (``StepLR``'s, as ``tests/test_torch_ref.py`` checks).
    """

    steps_per_call = 16

    def __init__(self, config: TrainConfig, splits: Splits, device: torch.device, loader: str = "tensor",
                 data_dir=None, compile: bool = False, cuda_graphs: bool = False):  # fmt: skip
        check_cuda_graphs(cuda_graphs, device, loader, compile)
        weight, bias = initial_params(config, splits.n_features, splits.n_classes)
        self.device, self.loader, self.config = device, loader, config
        self.dtype = DTYPES[config.dtype]
        self.model = from_arrays(weight, bias).to(device)  # the same initial weights as every backend
        self.loss_fn = nn.CrossEntropyLoss()  # mean over the batch
        self.optimizer = torch.optim.SGD(
            self.model.parameters(),
            # compiled, a learning rate in a tensor, set in place by the schedule (a number compiles again: .compiled)
            lr=torch.tensor(config.lr, dtype=torch.float64, device=device) if compile else config.lr,
            momentum=config.momentum,
            dampening=config.dampening,
            weight_decay=config.weight_decay,
            nesterov=config.nesterov,
        )
        parts = {"train": splits.train, "val": splits.val, "test": splits.test}
        if loader == "tensor":
            self.data = {k: as_tensors(splits, p, self.dtype, device) if p else None for k, p in parts.items()}
        elif loader == "torchvision":
            self.data = torchvision_parts(splits, data_dir)
        else:
            self.data = {k: as_dataset(splits, p, self.dtype) if p else None for k, p in parts.items()}
        self.n_train, self.has_val, self.info = len(splits.train), splits.val is not None, {}
        self._epoch = (None, None)  # (order, order on the device or DataLoader iterator)
        self._next = 0
        self._step = self._eager_step
        self._graphs = GraphedBlocks(self._block, self.optimizer) if cuda_graphs else None
        self.info.update(compiled=compile, cuda_graphs=cuda_graphs)
        if compile:
            self._compile()

    def _compile(self) -> None:
        """Compile the step for the batch shapes the run meets (:mod:`.compiled`), undo the steps that took, and
        say how long it did in ``info["compile_seconds"]``."""
        start = time.perf_counter()
        initial = self.state()
        size, short = self.config.batch_size, self.n_train % self.config.batch_size
        self._step = CompiledStep(self._eager_step, self.optimizer)
        self._step.warm_up([self._first_samples(n) for n in (size, short) if n])
        self.load_state(initial)
        self.optimizer.zero_grad(set_to_none=True)
        self.info["compile_seconds"] = time.perf_counter() - start

    # -- training -------------------------------------------------------------------------------------

    def run_steps(self, order: np.ndarray, batches: list[slice], lr: float) -> tuple[float, int]:
        for group in self.optimizer.param_groups:
            if isinstance(group["lr"], torch.Tensor):
                group["lr"].fill_(lr)
            else:
                group["lr"] = lr
        self.model.train()
        if self.loader == "tensor":
            idx = self._device_order(order)[batches[0].start : batches[-1].stop]  # the batches are consecutive
            sizes = tuple(batch.stop - batch.start for batch in batches)
            loss_sum, correct = self._graphs(idx, sizes, lr) if self._graphs else self._block(idx, sizes)
        else:
            loss_sum, correct = self._totals()
            for x, y in self._loaded_batches(order, batches):
                loss, n_correct = self._step(x, y)
                loss_sum += loss * len(y)
                correct += n_correct
        return float(loss_sum), int(correct)  # one synchronisation per call, not per step

    def _block(self, idx: torch.Tensor, sizes: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
        """The steps on the batches ``idx[:sizes[0]]``, ``idx[sizes[0]:sizes[0] + sizes[1]]``, ... of the training
        tensors (``idx`` on the device): the loss sum and correct count, as device tensors."""
        x_all, y_all = self.data["train"]
        loss_sum, correct = self._totals()
        lo = 0
        for size in sizes:
            batch = idx[lo : lo + size]
            lo += size
            loss, n_correct = self._step(x_all[batch], y_all[batch])
            loss_sum += loss * size
            correct += n_correct
        return loss_sum, correct

    def _totals(self) -> tuple[torch.Tensor, torch.Tensor]:
        """A zero loss sum (float64) and correct count (int64) on the device."""
        return (torch.zeros((), dtype=torch.float64, device=self.device),
                torch.zeros((), dtype=torch.int64, device=self.device))  # fmt: skip

    def _eager_step(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One SGD step, the textbook way: forward, loss, ``zero_grad``, ``backward``, ``step``; returns the
        batch's mean loss and its number of correct predictions, as tensors (no synchronisation)."""
        logits = self.model(x)
        loss = self.loss_fn(logits, y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return loss.detach(), (logits.argmax(dim=1) == y).sum()

    def _first_samples(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The first ``n`` training samples as the loader hands a batch of ``n`` to the step, on the device."""
        if self.loader == "tensor":
            x_all, y_all = self.data["train"]
            return x_all[torch.arange(n, device=self.device)], y_all[torch.arange(n, device=self.device)]
        x, y = next(iter(DataLoader(Subset(self.data["train"], range(n)), batch_size=n)))
        return x.to(self.device), y.to(self.device)

    def _device_order(self, order: np.ndarray) -> torch.Tensor:
        """The epoch's order on the device, copied once an epoch."""
        if self._epoch[0] is not order:
            self._epoch = (order, torch.from_numpy(order).to(self.device))
        return self._epoch[1]

    def _loaded_batches(self, order, batches):
        """The batches through a DataLoader over the epoch's order (resumed mid-epoch where the last call ended)."""
        if self._epoch[0] is not order or self._next != batches[0].start:  # a new epoch, or a resumed one
            rest = Subset(self.data["train"], order[batches[0].start :].tolist())
            self._epoch = (order, iter(DataLoader(rest, batch_size=self.config.batch_size, shuffle=False)))
        for batch in batches:
            x, y = next(self._epoch[1])
            self._next = batch.stop
            yield x.to(self.device), y.to(self.device)

    # -- evaluation -------------------------------------------------------------------------------------

    @torch.no_grad()
    def evaluate(self, split: str) -> tuple[float, float]:
        self.model.eval()
        if self.loader == "tensor":
            xs, ys = self.data[split]
            chunks = [(xs[i : i + 8192], ys[i : i + 8192]) for i in range(0, len(ys), 8192)]
        else:
            chunks = DataLoader(self.data[split], batch_size=1000)
        loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        correct = torch.zeros((), dtype=torch.int64, device=self.device)
        n = 0
        for x, y in chunks:
            x, y = x.to(self.device), y.to(self.device)
            logits = self.model(x)
            loss_sum += nn.functional.cross_entropy(logits, y, reduction="sum")
            correct += (logits.argmax(dim=1) == y).sum()
            n += len(y)
        return float(loss_sum) / n, int(correct) / n

    # -- state, as NumPy arrays (the checkpoint format is shared with lr_from_scratch) ---------------------

    def params(self) -> tuple[np.ndarray, np.ndarray]:
        return to_arrays(self.model)

    def state(self) -> dict[str, np.ndarray]:
        weight, bias = to_arrays(self.model)
        state = {"weight": weight, "bias": bias}
        for i, p in enumerate(self.model.parameters()):
            buf = self.optimizer.state.get(p, {}).get("momentum_buffer")
            if buf is not None:
                state[momentum_buffer_key(i)] = buf.detach().cpu().numpy().copy()
        return state

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        with torch.no_grad():
            self.model.linear.weight.copy_(torch.from_numpy(state["weight"]))
            self.model.linear.bias.copy_(torch.from_numpy(state["bias"]))
        self.optimizer.state.clear()
        if self._graphs:  # the recordings update the momentum buffers replaced here
            self._graphs.forget()
        for i, p in enumerate(self.model.parameters()):
            if momentum_buffer_key(i) in state:
                buffer = torch.from_numpy(state[momentum_buffer_key(i)]).to(p, copy=True)  # not the caller's array
                if isinstance(self._step, CompiledStep):  # into the tensors its update reads
                    buffer = self._step.keep(p, buffer)
                self.optimizer.state[p]["momentum_buffer"] = buffer
