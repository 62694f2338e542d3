"""slimmable stage: one network with switchable BN for every slimmable.targets budget.

Each target is extrapolated from the same search trajectory as search.flops (so the target
equal to search.flops gives exactly the optimized network's channels), the widths are trained
jointly from scratch with the train recipe, and each is scored on the test split beside the
individually trained network of the same channels where the pipeline has one (the optimized
network). Off by default: with no targets the CLI writes an empty record instead (pipeline/off.py).
"""

from __future__ import annotations

from pathlib import Path

import torch

from slimnet import atomic
from slimnet.config import ExtrapolateParams, ModelParams, Params, SlimmableParams, SupernetParams, TrainParams
from slimnet.console.errors import SlimnetError
from slimnet.console.output import print_summary
from slimnet.console.progress import reporter
from slimnet.datasets.load import load_split
from slimnet.nn.switchable import SlimmableNetwork
from slimnet.optimizers.budgets import Budget, Costs
from slimnet.optimizers.trajectory import Trajectory
from slimnet.optimizers.transfer import OutOfRange
from slimnet.pipeline.common import (
    CHECKPOINTS,
    DATA,
    STAGES,
    pick_device,
    read_json,
    trained_model,
    variant_spec,
    write_timings,
)
from slimnet.pipeline.selection import extrapolate_budgets, supernet_space
from slimnet.pipeline.specs import check_network, dataset_resolution, full_uniform
from slimnet.space.spec import ArchSpec, load_spec
from slimnet.stats.scoring import accuracy
from slimnet.training.checkpoint import Checkpoints, fingerprint
from slimnet.training.joint import train_slimmable
from slimnet.training.live import LiveCurves
from slimnet.training.trained import load_trained, save_slimmable_blob

SLIMMABLE = STAGES / "slimmable"


def target_specs(
    model: ModelParams, extrapolate: ExtrapolateParams, supernet: SupernetParams, targets: list[int]
) -> list[ArchSpec]:
    """The full network's channels for each FLOPs target, picked, extrapolated and put on a channel
    grid exactly as extrapolate does (the grid is the one where the target's random draws land too),
    so a target equal to search.flops gives the optimized network's channels."""
    meta = read_json(DATA / "meta.json", "data")
    trajectory = Trajectory.load(STAGES / "search" / "trajectory.json")
    full = full_uniform(model, meta)
    space = supernet_space(trajectory, supernet)
    specs = []
    for target in targets:
        try:
            result = extrapolate_budgets(
                trajectory,
                [Budget("flops", target)],
                full=full,
                costs=Costs(None),
                space=space,
                model=model,
                extrapolate=extrapolate,
            )
        except OutOfRange as error:
            raise SlimnetError(f"slimmable.targets: {target:,} FLOPs: {error}") from None
        specs.append(result["optimized"])
    return specs


def run_slimmable(
    model_params: ModelParams,
    extrapolate: ExtrapolateParams,
    supernet: SupernetParams,
    slimmable: SlimmableParams,
    recipe: TrainParams,
    *,
    device: torch.device,
    out_dir: Path = SLIMMABLE,
) -> dict:
    specs = target_specs(model_params, extrapolate, supernet, slimmable.targets)
    train_set = load_split(DATA / "full" / "train.pt", device)
    val_set = load_split(DATA / "full" / "val.pt", device)
    torch.manual_seed(recipe.seed)
    network = SlimmableNetwork(specs)
    key = fingerprint(
        {
            "specs": [s.model_dump(mode="json") for s in specs],
            "recipe": recipe.recipe_fields(),
            "distill": slimmable.distill,
            "train": len(train_set),
        }
    )
    checkpoints = Checkpoints(CHECKPOINTS / "slimmable", key)
    with reporter(curves=LiveCurves(out_dir / "live")) as report:
        network, _, summary = train_slimmable(
            network,
            train_set,
            val_set,
            recipe=recipe,
            distill=slimmable.distill,
            checkpoints=checkpoints,
            device=device,
            report=report,
        )
    atomic.save_torch(out_dir / "model.pt", save_slimmable_blob(network, slimmable.targets))
    test_set = load_split(DATA / "full" / "test.pt", device)
    rows = compare_with_individual(network, slimmable.targets, test_set, device, seed=recipe.seeds[0])
    metrics = {"targets": rows, "distill": slimmable.distill, "epochs": recipe.epochs}
    atomic.write_json(out_dir / "metrics.json", metrics)
    write_timings(out_dir, {"train_seconds": summary["train_seconds"]})
    checkpoints.clear()
    return {**metrics, "train_seconds": summary["train_seconds"]}


def compare_with_individual(
    network: SlimmableNetwork, targets: list[int], test_set, device: torch.device, *, seed: int
) -> list[dict]:
    """Test top-1 of every width, and of the individually trained network with the same channels.

    The pipeline trains one such network: the optimized one at search.flops, whose channels a
    target equal to search.flops reproduces exactly (its training with ``seed``). Other targets have none here (null): run
    `dvc exp run -S search.flops=<target>` to train it, and compare.
    """
    optimized = load_spec(variant_spec("optimized"))
    individual_top1 = None
    rows = []
    for index, (target, spec) in enumerate(zip(targets, network.specs)):
        network.switch(index)
        top1, _ = accuracy(network, test_set.batches(1000, shuffle=False, augment=False))
        cost = spec.cost()
        row = {
            "target_flops": target,
            "flops": cost.flops,
            "params": cost.params,
            "top1": round(top1, 3),
            "individual": None,
            "individual_top1": None,
            "gap_top1": None,
        }
        if spec.channels == optimized.channels:
            if individual_top1 is None:
                alone = load_trained(optimized, trained_model("optimized", seed)).to(device, memory_format=torch.channels_last)
                individual_top1, _ = accuracy(alone, test_set.batches(1000, shuffle=False, augment=False))
            row.update(
                individual="optimized",
                individual_top1=round(individual_top1, 3),
                gap_top1=round(top1 - individual_top1, 3),
            )
        rows.append(row)
    return rows


def command(p: Params, device: str) -> None:
    """`python -m slimnet slimmable`: train and score the slimmable network, print the summary."""
    check_network(p, dataset_resolution())
    summary = run_slimmable(p.model, p.extrapolate, p.supernet, p.slimmable, p.slimmable_recipe(), device=pick_device(device))
    print_summary("slimmable", summary)
