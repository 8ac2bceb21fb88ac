"""The PyTorch training step behind the shared training loop's interface (``lr_from_scratch.backends``)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Subset

from lr_from_scratch.config import TrainConfig
from lr_from_scratch.data import Splits, rng
from lr_from_scratch.model import init_params

from .data import DTYPES, MNISTDataset, as_tensors
from .model import LogisticRegression

LOADERS = ("tensor", "dataloader")


class TorchBackend:
    """``nn.CrossEntropyLoss``, ``torch.optim.SGD`` and ``StepLR`` on a :class:`LogisticRegression`.

    ``loader="tensor"`` keeps every split on the device and slices batches by index (the fast path);
    ``loader="dataloader"`` is the textbook ``Dataset``/``DataLoader`` pipeline with per-sample transforms.
    Both visit the samples in the order the shared loop gives, so trajectories compare with lr_from_scratch.
    """

    steps_per_call = 16

    def __init__(self, config: TrainConfig, splits: Splits, device: torch.device, loader: str = "tensor"):
        weight, bias = init_params(784, 10, config.init, rng(config.seed, "init"), config.dtype)
        self.device, self.loader, self.config = device, loader, config
        self.dtype = DTYPES[config.dtype]
        self.model = LogisticRegression.from_arrays(weight, bias).to(device)  # the same initial weights
        self.loss_fn = nn.CrossEntropyLoss()  # mean over the batch
        self.optimizer = torch.optim.SGD(
            self.model.parameters(),
            lr=config.lr,
            momentum=config.momentum,
            dampening=config.dampening,
            weight_decay=config.weight_decay,
            nesterov=config.nesterov,
        )
        step_size = config.lr_step or 10**9  # 0 means a constant rate
        self.scheduler = torch.optim.lr_scheduler.StepLR(self.optimizer, step_size=step_size, gamma=config.lr_gamma)
        parts = {"train": splits.train, "val": splits.val, "test": splits.test}
        if loader == "tensor":
            self.data = {k: as_tensors(splits, p, self.dtype, device) if p else None for k, p in parts.items()}
        else:
            self.data = {
                k: MNISTDataset(p, splits.mean, splits.std, self.dtype) if p else None for k, p in parts.items()
            }
        self.n_train = len(splits.train)
        self._epoch = (None, None)  # (order, order on the device or DataLoader iterator)
        self._next = 0

    # -- training -------------------------------------------------------------------------------------

    def run_steps(self, order: np.ndarray, batches: list[slice], lr: float) -> tuple[float, int]:
        group_lr = self.optimizer.param_groups[0]["lr"]
        if group_lr != lr:
            raise RuntimeError(f"StepLR gives lr {group_lr}, the shared schedule {lr}: they must agree")
        self.model.train()
        loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        correct = torch.zeros((), dtype=torch.int64, device=self.device)
        for x, y in self._batches(order, batches):
            logits = self.model(x)
            loss = self.loss_fn(logits, y)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            loss_sum += loss.detach() * len(y)
            correct += (logits.argmax(dim=1) == y).sum()
        if batches[-1].stop == self.n_train:  # the epoch is over
            self.scheduler.step()
        return float(loss_sum), int(correct)  # one synchronisation per call, not per step

    def _batches(self, order, batches):
        if self.loader == "tensor":
            if self._epoch[0] is not order:
                self._epoch = (order, torch.from_numpy(order).to(self.device))
            x, y = self.data["train"]
            for batch in batches:
                idx = self._epoch[1][batch]
                yield x[idx], y[idx]
            return
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
        return self.model.arrays()

    def state(self) -> dict[str, np.ndarray]:
        weight, bias = self.model.arrays()
        state = {"weight": weight, "bias": bias}
        for i, p in enumerate(self.model.parameters()):
            buf = self.optimizer.state.get(p, {}).get("momentum_buffer")
            if buf is not None:
                state[f"momentum_buffer_{i}"] = buf.detach().cpu().numpy().copy()
        state["scheduler_last_epoch"] = np.array(self.scheduler.last_epoch)
        state["lr"] = np.array(self.optimizer.param_groups[0]["lr"])
        return state

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        with torch.no_grad():
            self.model.linear.weight.copy_(torch.from_numpy(state["weight"]))
            self.model.linear.bias.copy_(torch.from_numpy(state["bias"]))
        self.optimizer.state.clear()
        for i, p in enumerate(self.model.parameters()):
            if f"momentum_buffer_{i}" in state:
                self.optimizer.state[p]["momentum_buffer"] = torch.from_numpy(state[f"momentum_buffer_{i}"]).to(p)
        if "scheduler_last_epoch" in state:
            self.scheduler.last_epoch = int(state["scheduler_last_epoch"])
            for group in self.optimizer.param_groups:
                group["lr"] = float(state["lr"])
