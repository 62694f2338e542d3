"""supernet stage: sandwich-rule training of the projected network's supernet."""

from __future__ import annotations

from pathlib import Path

import torch

from slimnet import atomic
from slimnet.config import ModelParams, Params, SupernetParams, TransferParams
from slimnet.console.output import print_summary
from slimnet.console.progress import reporter
from slimnet.datasets.load import fixed_batches, load_split
from slimnet.parallel.world import SINGLE, World
from slimnet.pipeline.common import (
    CHECKPOINTS,
    DATA,
    STAGES,
    read_json,
    write_timings,
)
from slimnet.pipeline.ranks import stage_processes
from slimnet.pipeline.specs import check_network, dataset_resolution, projected_uniform
from slimnet.training.checkpoint import Checkpoints
from slimnet.training.live import LiveCurves
from slimnet.training.sandwich import build_space, save_supernet_file, supernet_key, train_supernet


def run_supernet(
    model: ModelParams,
    transfer_params: TransferParams,
    supernet: SupernetParams,
    *,
    device: torch.device,
    out_dir: Path = STAGES / "supernet",
    world: World = SINGLE,
    sync_bn: bool = False,
) -> dict:
    """Train the supernet (on every rank of ``world``); rank 0 writes the outputs."""
    meta = read_json(DATA / "search" / "meta.json", "project")  # search resolution, classes, channels
    train_set = load_split(DATA / "search" / "train.pt", device)
    val_set = load_split(DATA / "search" / "val.pt", device)
    reference = projected_uniform(model, transfer_params, supernet, meta)
    space = build_space(
        reference, min_width=supernet.min_width, max_width=supernet.max_width, groups=supernet.groups, divisor=supernet.divisor
    )
    recipe = supernet
    calib = fixed_batches(train_set, supernet.eval_images, 512, recipe.seed)
    evals = world.share_batches(fixed_batches(val_set, supernet.eval_images, 512, recipe.seed))
    checkpoints = Checkpoints(
        CHECKPOINTS / "supernet", supernet_key(reference, space, recipe, supernet.samples, len(train_set), supernet.dropout)
    )
    live = LiveCurves(out_dir / "live") if world.is_main else None
    with reporter(silent=not world.is_main, curves=live) as report:
        network, _, summary = train_supernet(
            space,
            train_set,
            calib,
            evals,
            recipe=recipe,
            samples=supernet.samples,
            resolution=reference.resolution,
            checkpoints=checkpoints,
            device=device,
            report=report,
            world=world,
            sync_bn=sync_bn,
            dropout=supernet.dropout,
        )
    timings = {key: summary.pop(key) for key in ("train_seconds", "allreduce_seconds") if key in summary}
    summary = {**summary, "units": len(space.choices), "train_images": len(train_set)}
    if not world.is_main:
        return {**summary, **timings}
    save_supernet_file(out_dir / "supernet.pt", network, reference, space)
    atomic.write_json(out_dir / "metrics.json", summary)
    write_timings(out_dir, timings)
    checkpoints.clear()
    return {**summary, **timings}


def command(p: Params, device: str, relaunch: list[str]) -> None:
    """`python -m slimnet supernet`: on this process or on torchrun's ranks, each running the
    command line ``relaunch``; the main rank prints the summary."""
    check_network(p, dataset_resolution())
    with stage_processes(p.resources, relaunch, device, **{"supernet.batch_size": p.supernet.batch_size}) as rank:
        if rank is not None:
            world, on = rank
            summary = run_supernet(p.model, p.transfer, p.supernet, device=on, world=world, sync_bn=p.resources.sync_bn)
            if world.is_main:
                print_summary("supernet", summary)
