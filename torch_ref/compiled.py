"""``torch.compile`` of PyTorch's training step, compiled before training so that no epoch's timing includes it.

``torch.compile`` turns the step into graphs of fused kernels: the forward and backward passes (the step breaks
at ``zero_grad`` and at ``backward``) and the optimizer's update. It compiles a graph again whenever a *guard*
fails, a fact about the inputs the graph was compiled for. Three of them shape the code here:

- the shape of a batch: compiled with ``dynamic=False``, each batch shape a run meets (its batches, and a short
  last one) gets a graph of its own, compiled here, before the first epoch;
- the learning rate: a Python number is a constant in the compiled update, so each new rate of the schedule
  compiled it again, and after eight (``torch._dynamo.config.recompile_limit``) torch warned and ran the update
  eagerly. The backend gives ``SGD`` a tensor instead, whose value the schedule changes in place;
- the momentum buffers: the compiled update is bound to the very tensors it was compiled with (it guards on
  their identity). SGD's first step makes new ones (a copy of the gradient), so the first step of a run runs
  eagerly and its buffers are then copied into the tensors the update knows; a loaded checkpoint's go there too.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

#: ``step(x, y) -> (mean loss, correct count)``: one SGD step on a batch, device tensors out.
Step = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]

#: Graphs torch compiles for one piece of code before it runs it eagerly (its default is 8). Every backend compiles
#: graphs of its own for the same code, the step's, bound to its optimizer: two each (a batch shape and a short
#: last one), so the benchmark report's four batch sizes reach the default, and a fifth backend passed it. The
#: count lasts the process (a backend's graphs count after it is gone): 64 is room for 32 compiled backends. It is
#: torch's setting for the whole process, raised to this, never lowered.
RECOMPILE_LIMIT = 64


class CompiledStep:
    """``step`` through ``torch.compile``, called as ``step`` is; :meth:`warm_up` compiles it."""

    def __init__(self, step: Step, optimizer: torch.optim.Optimizer):
        self.eager, self.optimizer = step, optimizer
        self.compiled = torch.compile(step, dynamic=False)
        config = torch._dynamo.config
        limit = "recompile_limit" if hasattr(config, "recompile_limit") else "cache_size_limit"  # older torch's name
        setattr(config, limit, max(getattr(config, limit), RECOMPILE_LIMIT))
        self.buffers: dict[torch.Tensor, torch.Tensor] = {}  # parameter -> the momentum buffer the update reads

    def warm_up(self, batches: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        """Compile for each of ``batches`` (one of each shape the run meets), after one eager step that makes
        the momentum buffers. These are real steps: undo them (the backend loads its initial state)."""
        self.eager(*batches[0])
        for x, y in batches:
            self.compiled(x, y)
        self.buffers = {p: s["momentum_buffer"] for p, s in self.optimizer.state.items() if "momentum_buffer" in s}

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.buffers and not self.optimizer.state:  # a first step, which makes new momentum buffers
            totals = self.eager(x, y)
            for p, state in self.optimizer.state.items():
                state["momentum_buffer"] = self.keep(p, state["momentum_buffer"])
            return totals
        return self.compiled(x, y)

    def keep(self, param: torch.Tensor, buffer: torch.Tensor) -> torch.Tensor:
        """``buffer``'s values in the tensor the compiled update reads as ``param``'s momentum buffer (``buffer``
        itself before :meth:`warm_up`)."""
        known = self.buffers.get(param)
        if known is None:
            return buffer
        return known.copy_(buffer)
