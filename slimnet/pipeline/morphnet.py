"""morphnet stage (search.method: morphnet): the supernet's largest configuration trained with
MorphNet's resource-weighted penalty, saved with each unit's channels sorted by score, so the
search stage reads every threshold as a prefix configuration. With another method the CLI
writes a record saying so instead (pipeline/off.py)."""

from __future__ import annotations

from pathlib import Path

import torch

from slimnet import atomic
from slimnet.config import ModelParams, MorphNetParams, Params, SupernetParams, TransferParams
from slimnet.console.output import print_summary
from slimnet.console.progress import reporter
from slimnet.datasets.load import load_split
from slimnet.optimizers.morphnet_penalty import layer_costs
from slimnet.optimizers.morphnet_training import train_morphnet
from slimnet.parallel.world import SINGLE, World
from slimnet.pipeline.common import CHECKPOINTS, DATA, STAGES, read_json, write_timings
from slimnet.pipeline.ranks import stage_processes
from slimnet.pipeline.specs import check_network, dataset_resolution, projected_uniform
from slimnet.space.channels import ChannelSpace
from slimnet.training.checkpoint import Checkpoints, fingerprint
from slimnet.training.live import LiveCurves
from slimnet.training.recipe import Recipe
from slimnet.training.sandwich import build_space, save_supernet_file


def every_count(space: ChannelSpace) -> ChannelSpace:
    """The space's range with every channel count in it: a threshold keeps any number."""
    return ChannelSpace(space.blueprint, {unit: list(range(c[0], c[-1] + 1)) for unit, c in space.choices.items()})


def run_morphnet(
    model: ModelParams,
    transfer_params: TransferParams,
    supernet: SupernetParams,
    morphnet: MorphNetParams,
    *,
    device: torch.device,
    out_dir: Path = STAGES / "morphnet",
    world: World = SINGLE,
    sync_bn: bool = False,
) -> dict:
    meta = read_json(DATA / "search" / "meta.json", "project")
    train_set = load_split(DATA / "search" / "train.pt", device)
    val_set = load_split(DATA / "search" / "val.pt", device)
    reference = projected_uniform(model, transfer_params, supernet, meta)
    space = build_space(
        reference, min_width=supernet.min_width, max_width=supernet.max_width, groups=supernet.groups, divisor=supernet.divisor
    )
    layers = layer_costs(space.blueprint, reference.resolution, morphnet.resource)
    recipe = Recipe(**morphnet.recipe_fields())
    key = fingerprint(
        {
            "reference": reference.model_dump(mode="json"),
            "maximum": space.maximum,
            "recipe": recipe.recipe_fields(),
            "penalty": [morphnet.strength, morphnet.threshold, morphnet.resource],
            "train": len(train_set),
        }
    )
    checkpoints = Checkpoints(CHECKPOINTS / "morphnet", key)
    live = LiveCurves(out_dir / "live") if world.is_main else None
    with reporter(silent=not world.is_main, curves=live) as report:
        network, scores, _, summary = train_morphnet(
            space,
            layers,
            train_set,
            val_set,
            recipe=recipe,
            resolution=reference.resolution,
            strength=morphnet.strength,
            threshold=morphnet.threshold,
            checkpoints=checkpoints,
            device=device,
            report=report,
            world=world,
            sync_bn=sync_bn,
        )
    timings = {"train_seconds": summary.pop("train_seconds")}
    summary = {"enabled": True, **summary, "units": len(space.choices), "train_images": len(train_set)}
    if world.is_main:
        save_supernet_file(out_dir / "network.pt", network, reference, every_count(space), scores=scores, method="morphnet")
        atomic.write_json(out_dir / "metrics.json", summary)
        write_timings(out_dir, timings)
        checkpoints.clear()
    return {**summary, **timings}


def command(p: Params, device: str, relaunch: list[str]) -> None:
    """`python -m slimnet morphnet`: on this process or on torchrun's ranks; the main rank prints the summary."""
    check_network(p, dataset_resolution())
    with stage_processes(p.resources, relaunch, device, **{"morphnet.batch_size": p.morphnet.batch_size}) as rank:
        if rank is not None:
            world, on = rank
            summary = run_morphnet(
                p.model,
                p.transfer,
                p.supernet,
                p.morphnet,
                device=on,
                world=world,
                sync_bn=p.resources.sync_bn,
            )
            if world.is_main:
                print_summary("morphnet", {k: v for k, v in summary.items() if k != "alive"})
