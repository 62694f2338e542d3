"""Who this process is among the data-parallel ranks, the shares it takes and the sums it
exchanges. One process is a world of size 1, and then every method here does nothing, so the
single-process path is the same code. Joining the process group torchrun set up is here too;
launching torchrun is pipeline/ranks.py's.

Every rank draws the same global batches (same seeded order and augmentation draws) and takes
its contiguous share of each.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    """This process's place among ``size`` data-parallel processes."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    local_size: int = 1

    @property
    def is_main(self) -> bool:
        """Rank 0 alone writes checkpoints, outputs and progress."""
        return self.rank == 0

    def bounds(self, n: int) -> tuple[int, int]:
        """This rank's contiguous share [lo, hi) of n items; shares differ by at most one."""
        return n * self.rank // self.size, n * (self.rank + 1) // self.size

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum over ranks, in place (nothing happens in a world of one)."""
        if self.size == 1:
            return tensor
        if tensor.device.type == "cpu" and dist.get_backend() == "nccl":  # NCCL reduces GPU tensors only
            on_gpu = tensor.cuda()
            dist.all_reduce(on_gpu, op=dist.ReduceOp.SUM)
            return tensor.copy_(on_gpu.cpu())
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def seed_dropout(self, seed: int, epoch: int) -> None:
        """Ranks > 0 draw dropout masks from a stream of their own, reseeded every epoch so a
        resumed run draws the same; rank 0 keeps the one-process stream (and checkpoints it)."""
        if self.rank > 0:
            torch.manual_seed(seed + 1_000_003 * self.rank + epoch)

    def whole_batches(self, batches: Sequence) -> list:
        """Batches dealt out in turn (rank r takes r, r + size, ...): each rank keeps whole batches."""
        return list(batches[self.rank :: self.size])

    def share_batches(self, batches: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """This rank's share of eval-mode batches: whole ones when there are enough to go round,
        else a slice of each (scores of eval-mode networks do not depend on how images are batched)."""
        if len(batches) >= self.size:
            return self.whole_batches(batches)
        shares = [(x[lo:hi], y[lo:hi]) for x, y in batches for lo, hi in [self.bounds(len(y))]]
        return [(x, y) for x, y in shares if len(y) > 0]


SINGLE = World()


def launched_by_torchrun() -> bool:
    return "LOCAL_RANK" in os.environ and "WORLD_SIZE" in os.environ


def join_world(device: torch.device) -> World:
    """Join the process group torchrun set up (gloo on CPU, NCCL on CUDA); a world of one otherwise."""
    if not launched_by_torchrun() or int(os.environ["WORLD_SIZE"]) <= 1:
        return SINGLE
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return World(
        rank=dist.get_rank(),
        size=dist.get_world_size(),
        local_rank=int(os.environ["LOCAL_RANK"]),
        local_size=int(os.environ.get("LOCAL_WORLD_SIZE", "1")),
    )


def leave_world() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def rank_device(device: torch.device, world: World) -> torch.device:
    """One GPU per local rank; CPU ranks share the host."""
    if device.type == "cuda" and world.size > 1 and device.index is None:
        device = torch.device("cuda", world.local_rank)
        torch.cuda.set_device(device)
    return device
