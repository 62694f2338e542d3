"""The processes a heavy stage runs on: this one alone, or torchrun's ranks (resources.nproc > 1).

With one process in all nothing is launched and the stage runs as it always did. Otherwise
torchrun (torch.distributed.run) is started from the stage command itself, re-executing
`python -m slimnet <stage> ...` once per rank. The launching process turns the ranks' failures
into one line: a rank's own error message (SlimnetError, the user's to fix), or which rank died
and that the last checkpoint is kept for the next run.

Used by the supernet, search and train stages only, so the data stages never depend on it.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

from slimnet.config import ResourcesParams
from slimnet.console.errors import RANK_ERRORS, SlimnetError
from slimnet.parallel.world import World, join_world, launched_by_torchrun, leave_world, rank_device
from slimnet.pipeline.common import pick_device


@contextmanager
def stage_processes(
    resources: ResourcesParams, stage_args: list[str], device_name: str, **batch_sizes: int
) -> Iterator[tuple[World, torch.device] | None]:
    """Yields None in a process that launched torchrun (its ranks did the stage's work), else
    this process's world and device. ``batch_sizes`` are global batches each rank needs a share of."""
    device = pick_device(device_name)
    if not launched_by_torchrun() and world_size(resources) > 1:
        check_batches(resources, **batch_sizes)
        try:
            launch(stage_args, resources)
        except RankDied as died:
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


class RankDied(Exception):
    """A rank exited without an error message of its own (killed, crashed): not a user error."""


def processes_per_node(resources: ResourcesParams) -> int:
    if resources.nproc != "auto":
        return resources.nproc
    return max(1, torch.cuda.device_count()) if torch.cuda.is_available() else 1


def world_size(resources: ResourcesParams) -> int:
    return processes_per_node(resources) * resources.nnodes


def threads_per_process(resources: ResourcesParams) -> int:
    """Processes on one host share its cores: without a limit each would start one thread per core."""
    if resources.threads != "auto":
        return resources.threads
    return max(1, (os.cpu_count() or 1) // processes_per_node(resources))


def check_batches(resources: ResourcesParams, **batch_sizes: int) -> None:
    """Every rank needs at least one image of every global batch."""
    size = world_size(resources)
    for key, batch in batch_sizes.items():
        if batch < size:
            raise SlimnetError(
                f"params.yaml: {key} ({batch}) is smaller than the {size} processes of resources.nproc x nnodes: "
                "every process needs a share of each batch; raise the batch size or lower nproc"
            )


def launch(stage_args: list[str], resources: ResourcesParams) -> None:
    """Run ``python -m slimnet <stage_args>`` on every rank of this node and wait for all of them."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    nproc = processes_per_node(resources)
    args = ["--nproc-per-node", str(nproc), "--nnodes", str(resources.nnodes), "--max-restarts", "0"]
    if resources.nnodes == 1:
        args.append("--standalone")  # a free local port, no endpoint to configure
    else:
        args += ["--rdzv-backend", "c10d", "--rdzv-endpoint", resources.rdzv_endpoint, "--rdzv-id", resources.rdzv_id]
    args += ["--module", "slimnet", *stage_args]
    # The elastic agent logs every restart decision and signal it sends; the one line below says it all.
    logging.getLogger("torch.distributed").setLevel(logging.CRITICAL)
    saved = {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", RANK_ERRORS)}
    with tempfile.TemporaryDirectory(prefix="slimnet-ranks-") as errors:
        os.environ["OMP_NUM_THREADS"] = str(threads_per_process(resources))
        os.environ[RANK_ERRORS] = errors
        try:
            run(parse_args(args))
        except ChildFailedError as failed:
            messages = sorted(Path(errors).iterdir())
            if messages:
                raise SlimnetError(messages[0].read_text()) from None
            raise RankDied(_death_line(failed, stage_args[0], world_size(resources))) from None
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


def _death_line(failed, stage: str, size: int) -> str:
    rank, failure = failed.get_first_failure()
    code = failure.exitcode
    how = (
        f"was killed by {signal.Signals(-code).name}"
        if code < 0 and -code in signal.valid_signals()
        else f"exited with code {code}"
    )
    kept = {"supernet": "epoch", "train": "epoch", "search": "step"}.get(stage)
    again = (
        f"the last {kept}'s checkpoint is kept in .checkpoints/: run the stage again (dvc repro) to resume from it"
        if kept
        else "nothing was written: run the stage again (dvc repro)"
    )
    return f"{stage}: rank {rank} of {size} {how}, which stopped every rank; {again}"
