"""alone stage: the supernet's largest and smallest configurations trained on their own with the
supernet's recipe, beside the supernet's top-1 for the same configurations.

AutoSlim's greedy search trusts the supernet to score a configuration roughly as that
configuration would score trained alone. A supernet far below its own max and min trained alone
ranks sub-networks from undertrained shared weights; one close to them is as good as its budget
of epochs allows. Off by default (it costs two trainings of the projected network)."""

from __future__ import annotations

from pathlib import Path

import torch

from slimnet import atomic
from slimnet.config import ModelParams, Params, SupernetParams, TransferParams
from slimnet.console.errors import SlimnetError
from slimnet.console.output import print_summary
from slimnet.console.progress import reporter
from slimnet.datasets.load import fixed_batches, load_split
from slimnet.nn.network import Network
from slimnet.pipeline.common import CHECKPOINTS, DATA, STAGES, pick_device, read_json, write_timings
from slimnet.pipeline.specs import check_network, dataset_resolution, projected_uniform
from slimnet.stats.scoring import accuracy
from slimnet.training.checkpoint import Checkpoints, fingerprint
from slimnet.training.recipe import Recipe
from slimnet.training.sandwich import build_space
from slimnet.training.scratch import train_network


def run_alone(
    model: ModelParams,
    transfer_params: TransferParams,
    supernet: SupernetParams,
    *,
    device: torch.device,
    out_dir: Path = STAGES / "alone",
) -> dict:
    """Train max and min alone (diagnostics.alone) and write their top-1 beside the supernet's."""
    meta = read_json(DATA / "search" / "meta.json", "project")
    shared = read_json(STAGES / "supernet" / "metrics.json", "supernet")
    if shared.get("enabled", True) is False:
        raise SlimnetError(
            "diagnostics.alone compares the AutoSlim supernet with its configurations trained alone, and the supernet was "
            "not trained (search.method is not autoslim): set diagnostics.alone: false"
        )
    train_set = load_split(DATA / "search" / "train.pt", device)
    val_set = load_split(DATA / "search" / "val.pt", device)
    reference = projected_uniform(model, transfer_params, supernet, meta)
    space = build_space(
        reference, min_width=supernet.min_width, max_width=supernet.max_width, groups=supernet.groups, divisor=supernet.divisor
    )
    recipe = Recipe(**supernet.recipe_fields())
    # The images the supernet's own max/min figures come from (its per-epoch curves).
    evals = fixed_batches(val_set, supernet.eval_images, 512, recipe.seed)
    record: dict = {"enabled": True, "epochs": recipe.epochs, "train_images": len(train_set)}
    seconds = {}
    for name, config in (("max", space.maximum), ("min", space.minimum)):
        spec = reference.with_channels(config)
        torch.manual_seed(recipe.seed)
        network = Network(spec.blueprint())
        key = fingerprint({"spec": spec.model_dump(mode="json"), "recipe": recipe.recipe_fields(), "train": len(train_set)})
        checkpoints = Checkpoints(CHECKPOINTS / "alone" / name, key)
        with reporter() as report:
            network, _, summary = train_network(
                network,
                train_set,
                val_set,
                recipe=recipe,
                checkpoints=checkpoints,
                device=device,
                report=report,
                name=f"{name} alone",
            )
        top1, _ = accuracy(network, evals)
        record[name] = {
            "alone_top1": round(top1, 3),
            "supernet_top1": shared[f"{name}_acc"],
            "gap": round(shared[f"{name}_acc"] - top1, 3),  # how far weight sharing leaves the supernet below
            "flops": spec.cost().flops,
        }
        seconds[f"{name}_seconds"] = summary["train_seconds"]
        checkpoints.clear()
    atomic.write_json(out_dir / "metrics.json", record)
    write_timings(out_dir, seconds)
    return record


def command(p: Params, device: str) -> None:
    """`python -m slimnet alone`: train the max and min configurations alone, print the summary."""
    check_network(p, dataset_resolution())
    print_summary("alone", run_alone(p.model, p.transfer, p.supernet, device=pick_device(device)))
