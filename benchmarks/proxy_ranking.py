"""Whose ranking fails: the supernet's, or the projected problem's?

The study trains each network (optimized, uniform, random) from scratch on the full problem, and
the supernet ranks them the other way round (study/README.md). Two things stand between the
two rankings: weight sharing (the supernet's scores come from shared, undertrained weights) and
the projection (16 px, half depth, 20% of the images). This script separates them: it trains each
variant's *projected* configuration (stages/extrapolate/projected.json, the configuration the
supernet scored) on its own, with the supernet's recipe on the search's images, once per seed,
and scores it on the whole held-out search split. If those proxy-alone networks rank like the full
trainings, the projection keeps the order and weight sharing loses it; if they rank like the
supernet, the projection itself misleads the search.

    python benchmarks/proxy_ranking.py [--projected stages/extrapolate/projected.json]
        [--seeds 0 1 2] [--variants optimized uniform] [--full study/2026-12-01/seeds.csv --target 6M] [--threads 2]

Run where `dvc repro extrapolate` has run (data/search, data/search/meta.json, the projected
configurations). Each training is one of the projected network (50-73 s with one thread here).
"""

from __future__ import annotations

import argparse
import csv
import statistics
import time
from pathlib import Path

import torch

from slimnet.config import load_params, parse_size
from slimnet.console.errors import SlimnetError
from slimnet.console.progress import reporter
from slimnet.datasets.load import fixed_batches, load_split
from slimnet.nn.network import Network
from slimnet.pipeline.common import read_json
from slimnet.pipeline.specs import projected_uniform
from slimnet.stats.ranking import kendall_tau
from slimnet.stats.scoring import accuracy
from slimnet.training.checkpoint import Checkpoints, fingerprint
from slimnet.training.recipe import Recipe
from slimnet.training.scratch import train_network


def full_top1(path: Path, flops: int) -> dict[str, list[float]]:
    """From-scratch top-1 on the full problem per variant (the study's seeds.csv, ratio rule)."""
    if not path.is_file():
        return {}
    found: dict[str, list[float]] = {}
    for row in csv.DictReader(open(path)):
        if parse_size(row["target"]) == flops and row["point"] == "ratio":
            name = f"{row['variant']}-{row['draw']}" if row.get("draw") else row["variant"]  # random-<draw>, as projected.json
            found.setdefault(name, []).append(float(row["top1"]))
    return found


def mean_std(values: list[float]) -> str:
    if not values:
        return "-"
    return f"{statistics.fmean(values):.2f} ± {statistics.stdev(values):.2f}" if len(values) > 1 else f"{values[0]:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--projected", type=Path, default=Path("stages/extrapolate/projected.json"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--variants", nargs="+", default=None, help="which of projected.json's configurations (default: all)")
    parser.add_argument("--full", type=Path, default=Path("study/2026-12-01/seeds.csv"))
    parser.add_argument("--target", default=None, help="the budget the projected configurations are for (default: search.flops)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--scratch", type=Path, default=Path(".checkpoints/proxy_ranking"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    params = load_params(args.params)
    target = parse_size(args.target) if args.target else params.search.flops
    projected = read_json(args.projected, "extrapolate")
    projected = {v: c for v, c in projected.items() if args.variants is None or v in args.variants}
    meta = read_json(Path("data/search/meta.json"), "project")
    device = torch.device("cpu")
    train_set = load_split(Path("data/search/train.pt"), device)
    val_set = load_split(Path("data/search/val.pt"), device)
    reference = projected_uniform(params.model, params.transfer, params.supernet, meta)
    judge = fixed_batches(val_set, len(val_set), 512, 0)  # every held-out image: the least noisy score
    fields = params.supernet.recipe_fields()

    specs = {variant: reference.with_channels(entry["channels"]) for variant, entry in projected.items()}
    alone: dict[str, list[float]] = {}
    for variant, spec in specs.items():
        for seed in args.seeds:
            recipe = Recipe(**{**fields, "seed": seed})
            torch.manual_seed(seed)
            # Keyed like the alone stage's: an interrupted run resumes, other settings start afresh.
            key = fingerprint({"spec": spec.model_dump(mode="json"), "recipe": recipe.recipe_fields(), "train": len(train_set)})
            checkpoints = Checkpoints(args.scratch, key)
            start = time.perf_counter()
            with reporter(silent=True) as report:
                network, _, _ = train_network(
                    Network(spec.blueprint()),
                    train_set,
                    val_set,
                    recipe=recipe,
                    checkpoints=checkpoints,
                    device=device,
                    report=report,
                    name=variant,
                )
            top1, _ = accuracy(network, judge)
            alone.setdefault(variant, []).append(top1)
            print(f"{variant} seed {seed}: proxy-alone top-1 {top1:.2f} ({time.perf_counter() - start:.0f} s)", flush=True)
            checkpoints.clear()

    full = full_top1(args.full, target)
    print(
        f"\nprojected configurations for {target / 1e6:g}M FLOPs, {len(train_set)} training images, {len(val_set)} held-out, {fields['epochs']} epochs"
    )
    print("| variant | projected FLOPs | supernet estimate | proxy alone (mean ± std) | full from scratch (mean ± std) |")
    print("|---|---|---|---|---|")
    for variant, entry in projected.items():
        flops = specs[variant].cost().flops
        print(
            f"| {variant} | {flops / 1e6:.2f}M | {entry['supernet_top1']:.2f} | {mean_std(alone[variant])} | {mean_std(full.get(variant, []))} |"
        )
    variants = [v for v in projected if full.get(v)]
    if len(variants) > 1:
        means = {v: statistics.fmean(alone[v]) for v in variants}
        fulls = {v: statistics.fmean(full[v]) for v in variants}
        estimates = {v: projected[v]["supernet_top1"] for v in variants}
        print(
            f"Kendall's tau, proxy alone vs full: {kendall_tau([means[v] for v in variants], [fulls[v] for v in variants]):+.2f}"
        )
        print(
            f"Kendall's tau, supernet vs proxy alone: {kendall_tau([estimates[v] for v in variants], [means[v] for v in variants]):+.2f}"
        )


if __name__ == "__main__":
    try:
        main()
    except SlimnetError as error:  # bad params or a stage not run yet: one line, not a traceback
        raise SystemExit(f"error: {error}") from None
