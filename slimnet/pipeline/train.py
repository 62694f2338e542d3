"""train stage: one variant trained from scratch with the shared recipe and one seed."""

from __future__ import annotations

from pathlib import Path

import torch

from slimnet import atomic
from slimnet.arch import load_spec
from slimnet.checkpoint import Checkpoints, fingerprint
from slimnet.config import TrainParams
from slimnet.data import load_split
from slimnet.distributed import SINGLE, World
from slimnet.errors import SlimnetError
from slimnet.nn.network import Network
from slimnet.pipeline.common import CHECKPOINTS, DATA, STAGES, VARIANTS, write_csv, write_timings
from slimnet.progress import reporter
from slimnet.train import train_network


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
    ``out_dir/<variant>/<seed>/``: the model, its curves and its metrics."""
    if variant not in VARIANTS:
        raise SlimnetError(f"--variant {variant!r}: choose one of {', '.join(VARIANTS)}")
    if seed not in train.seeds:
        raise SlimnetError(f"--seed {seed}: not in train.seeds {train.seeds}; add it there (dvc.yaml trains each listed seed)")
    recipe = train.with_seed(seed)
    spec = load_spec(STAGES / "extrapolate" / f"{variant}.json")
    train_set = load_split(DATA / "full" / "train.pt", device)
    val_set = load_split(DATA / "full" / "val.pt", device)
    torch.manual_seed(recipe.seed)  # same initialization stream for every variant
    model = Network(spec.blueprint())
    key = fingerprint({"spec": spec.model_dump(mode="json"), "recipe": recipe.recipe_fields(), "train": len(train_set)})
    checkpoints = Checkpoints(CHECKPOINTS / "train" / variant / str(seed), key)
    with reporter(silent=not world.is_main) as report:
        model, curves, summary = train_network(
            model,
            train_set,
            val_set,
            recipe=recipe,
            checkpoints=checkpoints,
            device=device,
            report=report,
            name=variant,
            world=world,
            sync_bn=sync_bn,
        )
    timings = {key: summary.pop(key) for key in ("train_seconds", "allreduce_seconds") if key in summary}
    if not world.is_main:
        return {**summary, **timings}
    target = out_dir / variant / str(seed)
    atomic.save_torch(
        target / "model.pt", {"spec": spec.model_dump(mode="json"), "model": {k: v.cpu() for k, v in model.state_dict().items()}}
    )
    write_csv(target / "curves.csv", curves)
    atomic.write_json(target / "metrics.json", summary)
    write_timings(target, timings)
    checkpoints.clear()
    return {**summary, **timings}
