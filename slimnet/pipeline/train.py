"""train stage: one variant (random: every draw) trained from scratch with the shared recipe and one seed."""

from __future__ import annotations

from pathlib import Path

import torch

from slimnet import atomic
from slimnet.config import Params, TrainParams
from slimnet.console.errors import SlimnetError
from slimnet.console.output import print_summary
from slimnet.console.progress import reporter
from slimnet.datasets.load import load_split
from slimnet.nn.network import Network
from slimnet.parallel.world import SINGLE, World
from slimnet.pipeline.common import CHECKPOINTS, DATA, STAGES, VARIANTS, write_timings
from slimnet.pipeline.networks import trained_blob, variant_specs
from slimnet.pipeline.ranks import stage_processes
from slimnet.training.checkpoint import Checkpoints, fingerprint
from slimnet.training.live import LiveCurves
from slimnet.training.scratch import train_network


def run_train(
    variant: str,
    seed: int,
    train: TrainParams,
    *,
    device: torch.device,
    out_dir: Path = STAGES / "train",
    world: World = SINGLE,
    sync_bn: bool = False,
) -> dict:
    """Train one variant with one seed (on every rank of ``world``); rank 0 writes
    ``out_dir/<variant>/<seed>/``: the model, its curves and its metrics. The random variant
    trains every draw of stages/extrapolate/random.json and writes them all there (by name)."""
    if variant not in VARIANTS:
        raise SlimnetError(f"--variant {variant!r}: choose one of {', '.join(VARIANTS)}")
    if seed not in train.seeds:
        raise SlimnetError(f"--seed {seed}: not in train.seeds {train.seeds}; add it there (dvc.yaml trains each listed seed)")
    recipe = train.with_seed(seed)
    specs = variant_specs(variant)  # one network, or (random) one per draw, each trained with this seed
    train_set = load_split(DATA / "full" / "train.pt", device)
    val_set = load_split(DATA / "full" / "val.pt", device)
    trained, summaries, timings = {}, {}, {}
    target = out_dir / variant / str(seed)
    live = LiveCurves(target / "live", nested=variant == "random") if world.is_main else None
    checkpoints = []
    for name, spec in specs.items():
        torch.manual_seed(recipe.seed)  # same initialization stream for every network
        model = Network(spec.blueprint())
        run_key = fingerprint({"spec": spec.model_dump(mode="json"), "recipe": recipe.recipe_fields(), "train": len(train_set)})
        # Kept until every network of the stage is trained: a rerun after a kill skips finished draws.
        checkpoints.append(Checkpoints(CHECKPOINTS / "train" / variant / str(seed), run_key))
        with reporter(silent=not world.is_main, curves=live) as report:
            model, _, summary = train_network(
                model,
                train_set,
                val_set,
                recipe=recipe,
                checkpoints=checkpoints[-1],
                device=device,
                report=report,
                name=name,
                world=world,
                sync_bn=sync_bn,
            )
        timings[name] = {key: summary.pop(key) for key in ("train_seconds", "allreduce_seconds") if key in summary}
        trained[name] = (spec, {k: v.cpu() for k, v in model.state_dict().items()})
        summaries[name] = summary
    # One network: its figures as they always were; random: each draw's under its name.
    result = {name: {**summaries[name], **timings[name]} for name in specs}
    if variant != "random":
        summaries, timings, result = summaries[variant], timings[variant], result[variant]
    if not world.is_main:
        return result
    atomic.save_torch(target / "model.pt", trained_blob(trained, variant))
    atomic.write_json(target / "metrics.json", summaries)
    write_timings(target, timings)
    for done in checkpoints:
        done.clear()
    return result


def command(p: Params, variant: str, seed: int, device: str, relaunch: list[str]) -> None:
    """`python -m slimnet train`: one variant and seed on this process or on torchrun's ranks,
    each running the command line ``relaunch``; the main rank prints the summary."""
    with stage_processes(p.resources, relaunch, device, **{"train.batch_size": p.train.batch_size}) as rank:
        if rank is not None:
            world, on = rank
            summary = run_train(variant, seed, p.train, device=on, world=world, sync_bn=p.resources.sync_bn)
            if world.is_main:
                print_summary(f"train {variant} seed {seed}", summary)
