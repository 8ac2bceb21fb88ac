"""CUDA graphs for PyTorch's training step: record a block of SGD steps once, replay it for each later block.

At small batches a step on a GPU is a dozen tiny kernels, and launching them from Python costs more than running
them. A CUDA graph records the launches of a whole block of steps (gather the batch, forward, loss, backward,
``optimizer.step()``, the loss and correct counts) and replays them with one call. What a replay reads and writes
must stay at the addresses it was recorded with: the training tensors, the parameters, the optimizer's momentum
buffers, and a *static* index tensor that each call refills with its batches' sample numbers.

Three PyTorch facts shape the recording (the "whole-network capture" recipe of PyTorch's CUDA semantics notes):

- recording runs nothing, so every replay is a real block of steps, and the steps before the first recording
  are real ones too: the first block of each shape runs eagerly (on a side stream, as the recipe asks), the
  second is recorded and then replayed;
- ``torch.optim.SGD`` creates its momentum buffers on its first step, in Python, so they must exist before a
  recording: the eager first block makes them;
- the learning rate is a Python number baked into the recorded update, so a new learning rate (the schedule)
  drops the recordings, and the next block of each shape is recorded again.
"""

from __future__ import annotations

import gc
from collections.abc import Callable
from dataclasses import dataclass

import torch

#: ``block(idx, sizes) -> (loss sum, correct)``: the SGD steps on the batches ``idx[:sizes[0]]``,
#: ``idx[sizes[0]:sizes[0] + sizes[1]]``, ... of the training tensors, with device tensors out (no synchronisation).
Block = Callable[[torch.Tensor, tuple[int, ...]], tuple[torch.Tensor, torch.Tensor]]


@dataclass
class Recording:
    """One recorded block: the graph, the index tensor it reads, and the totals it writes."""

    graph: torch.cuda.CUDAGraph
    idx: torch.Tensor
    loss_sum: torch.Tensor
    correct: torch.Tensor


class GraphedBlocks:
    """Runs ``block`` through CUDA graphs: one recording per shape of block (its batch sizes) and learning rate.

    Call it as ``block`` is called, with the learning rate too. The totals it returns are the recording's own
    tensors, overwritten by its next replay: read them (``float``, ``int``) before the next call.
    """

    def __init__(self, block: Block, optimizer: torch.optim.Optimizer):
        self.block, self.optimizer = block, optimizer
        self.recordings: dict[tuple[int, ...], Recording] = {}
        self.warmed: set[tuple[int, ...]] = set()
        self.lr: float | None = None

    def forget(self) -> None:
        """Start again: the optimizer's buffers were replaced (a loaded checkpoint), or may not exist yet."""
        self.recordings.clear()
        self.warmed.clear()

    def __call__(self, idx: torch.Tensor, sizes: tuple[int, ...], lr: float) -> tuple[torch.Tensor, torch.Tensor]:
        if lr != self.lr:  # the recorded updates hold the old one; the buffers are still there: no warm-up
            self.recordings.clear()
            self.lr = lr
        recording = self.recordings.get(sizes)
        if recording is None:
            if sizes not in self.warmed:
                self.warmed.add(sizes)
                return self._eager_on_side_stream(idx, sizes)
            recording = self.recordings[sizes] = self._record(idx, sizes)
        recording.idx.copy_(idx)
        recording.graph.replay()
        return recording.loss_sum, recording.correct

    def _eager_on_side_stream(self, idx, sizes):
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            totals = self.block(idx, sizes)
        torch.cuda.current_stream().wait_stream(stream)
        return totals

    def _record(self, idx, sizes) -> Recording:
        static_idx = torch.empty_like(idx)  # outside the graph's memory: the calls refill it before each replay
        graph = torch.cuda.CUDAGraph()
        self.optimizer.zero_grad(set_to_none=True)  # so the recorded backward makes its gradients in the graph's memory
        gc.collect()  # now, not during the recording: freeing another library's GPU memory then would break it
        with torch.cuda.graph(graph):  # records the launches; runs nothing
            loss_sum, correct = self.block(static_idx, sizes)
        return Recording(graph, static_idx, loss_sum, correct)
