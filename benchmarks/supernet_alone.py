"""Is the supernet the weak link? Its largest and smallest configurations trained alone.

Trains the projected problem's max and min configurations as ordinary networks with the
supernet's own recipe (same epochs, images, resolution), and prints their held-out top-1 beside
the supernet's (stages/supernet/metrics.json). A supernet far below its configurations trained
alone ranks sub-networks from undertrained weights; one close to them is as good as this
budget of epochs allows.

    python benchmarks/supernet_alone.py [--project .]

Run where `dvc repro supernet` has run (it reads data/search and the supernet's metrics).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from slimnet.checkpoint import Checkpoints
from slimnet.config import load_params
from slimnet.data import load_split
from slimnet.nn.network import Network
from slimnet.pipeline.specs import projected_uniform
from slimnet.progress import reporter
from slimnet.recipe import Recipe
from slimnet.supernet import build_space
from slimnet.train import train_network


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", type=Path, default=Path("."))
    args = parser.parse_args()
    root = args.project
    params = load_params(root / "params.yaml")
    meta = json.loads((root / "data/search/meta.json").read_text())
    reference = projected_uniform(params.model, params.transfer, params.supernet, meta)
    space = build_space(
        reference,
        min_width=params.supernet.min_width,
        max_width=params.supernet.max_width,
        groups=params.supernet.groups,
        divisor=params.supernet.divisor,
    )
    device = torch.device("cpu")
    train_set = load_split(root / "data/search/train.pt", device)
    val_set = load_split(root / "data/search/val.pt", device)
    recipe = Recipe(**params.supernet.recipe_fields())
    supernet = json.loads((root / "stages/supernet/metrics.json").read_text())
    print(
        f"supernet ({recipe.epochs} epochs, {len(train_set)} images, {reference.resolution} px): max {supernet['max_acc']:.2f}%, min {supernet['min_acc']:.2f}%"
    )
    for name, config in (("max", space.maximum), ("min", space.minimum)):
        torch.manual_seed(recipe.seed)
        model = Network(reference.with_channels(config).blueprint())
        started = time.perf_counter()
        with reporter() as report, tempfile.TemporaryDirectory() as scratch:
            _, curves, _ = train_network(
                model,
                train_set,
                val_set,
                recipe=recipe,
                checkpoints=Checkpoints(Path(scratch), name),
                device=device,
                report=report,
                name=name,
            )
        print(f"{name} configuration trained alone: {curves[-1]['val_acc']:.2f}% ({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
