"""SGD with PyTorch's exact update rule, and the step learning-rate schedule."""

from __future__ import annotations

import numpy as np


def momentum_buffer_key(i: int) -> str:
    """The name under which parameter ``i``'s momentum buffer is saved (0: weight, 1: bias), by every backend."""
    return f"momentum_buffer_{i}"


class SGD:
    r"""Stochastic gradient descent, step for step what ``torch.optim.SGD`` does.

    With learning rate :math:`\gamma`, momentum :math:`\mu`, dampening :math:`\tau`, weight decay
    :math:`\lambda`, for every parameter :math:`\theta` with gradient :math:`g`:

    .. math::

        g &\leftarrow g + \lambda \theta \\
        b &\leftarrow g \ \text{(first step)}, \quad b \leftarrow \mu b + (1 - \tau) g \ \text{(later)} \\
        g &\leftarrow g + \mu b \ \text{(Nesterov)}, \quad g \leftarrow b \ \text{(otherwise)} \\
        \theta &\leftarrow \theta - \gamma g

    This is not the Sutskever form ``v = mu v + lr g`` that many from-scratch libraries use: PyTorch scales the
    buffer by the learning rate at the last line, so a learning-rate change acts at once. Parameters are
    updated in place.
    """

    def __init__(self, params, lr, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False):
        """``params``: the arrays to update in place. Options are validated by :class:`TrainConfig`."""
        self.params = list(params)
        self.lr, self.momentum, self.dampening = lr, momentum, dampening
        self.weight_decay, self.nesterov = weight_decay, nesterov
        self.buffers: list[np.ndarray | None] = [None] * len(self.params)

    def step(self, grads) -> None:
        """Apply one update with ``grads`` (one array per parameter, same shapes)."""
        for i, (p, g) in enumerate(zip(self.params, grads, strict=True)):
            if self.weight_decay:
                g = g + self.weight_decay * p
            if self.momentum:
                buf = self.buffers[i]
                if buf is None:
                    buf = self.buffers[i] = g.copy()
                else:
                    buf *= self.momentum
                    buf += (1 - self.dampening) * g
                g = g + self.momentum * buf if self.nesterov else buf
            p -= self.lr * g

    def state_dict(self) -> dict[str, np.ndarray]:
        """The momentum buffers (those that exist), for a checkpoint."""
        return {momentum_buffer_key(i): b for i, b in enumerate(self.buffers) if b is not None}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        """Restore buffers saved by :meth:`state_dict`."""
        for i in range(len(self.params)):
            key = momentum_buffer_key(i)
            self.buffers[i] = np.array(state[key], dtype=self.params[i].dtype) if key in state else None


def step_lr(base_lr: float, epoch: int, step_size: int, gamma: float) -> float:
    """Learning rate of epoch ``epoch`` (0-based) under ``torch.optim.lr_scheduler.StepLR``.

    ``lr = base_lr * gamma ** (epoch // step_size)``, multiplied out one factor at a time as StepLR does, so
    the floats match. ``step_size`` 0 means a constant rate.
    """
    lr = base_lr
    if step_size > 0:
        for _ in range(epoch // step_size):
            lr *= gamma
    return lr
