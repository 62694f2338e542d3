"""The processes a heavy stage runs on: this one alone, or torchrun's ranks (resources.nproc > 1).

Used by the supernet, search and train commands only, so the data stages never depend on it.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

import torch

from slimnet.config import ResourcesParams
from slimnet.pipeline.common import pick_device
from slimnet.training import launch
from slimnet.training.distributed import World, join_world, launched_by_torchrun, leave_world, rank_device


@contextmanager
def stage_processes(
    resources: ResourcesParams, stage_args: list[str], device_name: str, **batch_sizes: int
) -> Iterator[tuple[World, torch.device] | None]:
    """Yields None in a process that launched torchrun (its ranks did the stage's work), else
    this process's world and device. ``batch_sizes`` are global batches each rank needs a share of."""
    device = pick_device(device_name)
    if not launched_by_torchrun() and launch.world_size(resources) > 1:
        launch.check_batches(resources, **batch_sizes)
        try:
            launch.launch(stage_args, resources)
        except launch.RankDied as died:
            print(f"error: {died}", file=sys.stderr, flush=True)
            raise SystemExit(1) from None
        yield None
        return
    if not launched_by_torchrun() and resources.threads != "auto":
        # One process: resources.threads applies here too (torchrun's ranks get it as OMP_NUM_THREADS),
        # so 1 process and N processes can run the same per-process arithmetic.
        torch.set_num_threads(resources.threads)
    world = join_world(device)
    try:
        yield world, rank_device(device, world)
    finally:
        leave_world()
