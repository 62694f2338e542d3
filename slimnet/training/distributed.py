"""Data-parallel training steps: the weight of a rank's loss and the gradients summed over
ranks with one all-reduce per step (who the ranks are: parallel/world.py).
"""

from __future__ import annotations

import time

import torch
import torch.distributed as dist

from slimnet.parallel.world import World


def loss_share(local: int, total: int) -> float:
    """Weight of a rank's mean loss so the ranks' weighted losses add up to the global batch mean
    (exactly 1.0 in a world of one, so the single-process step is unchanged)."""
    return local / total


class GradientReducer:
    """Sums the gradients of every rank with ONE all-reduce of one flat buffer per step, after all
    the backward passes of a step (the sandwich rule's max, min and random configurations add up
    locally first). ``seconds`` is the time spent in that all-reduce (waiting for the slowest rank
    included)."""

    def __init__(self, parameters: list[torch.nn.Parameter], world: World):
        self.parameters = [p for p in parameters if p.requires_grad]
        self.world = world
        self.seconds = 0.0

    def reduce(self, *extras: torch.Tensor) -> list[torch.Tensor]:
        """All-reduce the gradients and ``extras`` (scalars riding in the same buffer, e.g. the
        step's loss); returns the summed extras."""
        if self.world.size == 1:
            return list(extras)
        grads = []
        for p in self.parameters:
            # A parameter no rank used this step gets a zero gradient instead of none.
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            grads.append(p.grad)
        flat = torch.cat([g.reshape(-1) for g in grads] + [e.reshape(-1).to(grads[0].dtype) for e in extras])
        started = time.perf_counter()
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        self.seconds += time.perf_counter() - started
        offset = 0
        for g in grads:
            g.copy_(flat[offset : offset + g.numel()].view_as(g))
            offset += g.numel()
        return [flat[offset + i] for i in range(len(extras))]
