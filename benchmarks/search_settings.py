"""Which search settings find networks the supernet itself rates above the uniform one?

For each setting (criterion x scoring images x per_flop), the greedy search runs on the committed
supernet from the largest configuration to the floor, scoring on the first N images of the
search's held-out order. At each budget, the point extrapolate would select (its own rule) and the
uniform network's configuration are then scored on images the search never saw: the last
--judge images of the same order. The difference (selected - uniform, in top-1 points) is the
search's result by the supernet's own measure, free of the overfitting to its scoring sample.

    python benchmarks/search_settings.py [--project .] [--budgets 6M 8M 10M] [--images 512 2048]
                                         [--criteria accuracy loss] [--per-flop false]

Run where `dvc repro extrapolate` has run (supernet, search splits, latency table, data meta).
No training: minutes, not hours. A positive difference is necessary for the search to pay off,
not sufficient (the supernet's ranking of trained networks is the other half: ranking.kendall_tau).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from slimnet.config import load_params, parse_size
from slimnet.datasets.load import fixed_batches, load_split
from slimnet.deploy.latency_model import LatencyTable
from slimnet.optimizers.autoslim import CandidateEvaluator, greedy_slim
from slimnet.optimizers.baselines import projected_uniform
from slimnet.optimizers.budgets import Budget, Costs, extrapolate_within
from slimnet.pipeline.common import read_json
from slimnet.pipeline.specs import full_uniform
from slimnet.space.flops import cost
from slimnet.training.sandwich import load_supernet_file


def rebatch(x: torch.Tensor, y: torch.Tensor, size: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(x[i : i + size], y[i : i + size]) for i in range(0, len(y), size)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", type=Path, default=Path("."))
    parser.add_argument("--budgets", nargs="+", default=["6M", "8M", "10M"])
    parser.add_argument("--images", type=int, nargs="+", default=[512, 2048])
    parser.add_argument("--criteria", nargs="+", default=["accuracy", "loss"])
    parser.add_argument("--per-flop", nargs="+", default=["false"], choices=["false", "true"])
    parser.add_argument("--judge", type=int, default=2000, help="held-out images the results are judged on")
    args = parser.parse_args()

    root = args.project
    params = load_params(root / "params.yaml")
    search, model, extrapolate = params.search, params.model, params.extrapolate
    device = torch.device("cpu")
    network, reference, space = load_supernet_file(root / "stages/supernet/supernet.pt", device)
    full = full_uniform(model, read_json(root / "data/meta.json", "data"))
    costs = Costs(LatencyTable.load(root / "stages/latency/table.json"))
    val = load_split(root / "data/search/val.pt", device)
    # One seeded class-round-robin order of the whole split: its prefixes are exactly the search's
    # scoring samples (fixed_batches takes a prefix), its tail is never scored by the search.
    [(x, y)] = fixed_batches(val, len(val), len(val), search.seed + 1)
    if max(args.images) + args.judge > len(y):
        raise SystemExit(f"--images {max(args.images)} + --judge {args.judge} exceed the {len(y)} held-out images")
    judge = rebatch(x[-args.judge :], y[-args.judge :], search.batch_size)
    calib = []
    if search.bn == "recalibrate":
        calib = fixed_batches(
            load_split(root / "data/search/train.pt", device), search.calib_images, search.batch_size, search.seed
        )
    judge_eval = CandidateEvaluator(network, space, calib, judge, cache_bytes=0, bn=search.bn)
    floor = int(search.floor * cost(space.blueprint, space.maximum, reference.resolution).flops)

    print(f"supernet {root / 'stages/supernet/supernet.pt'}; judged on {args.judge} held-out images the search never scores")
    print("criterion  images  per_flop  steps  seconds  " + "  ".join(f"{b:>22}" for b in args.budgets))
    print(" " * 43 + "  ".join(f"{'selected/uniform (diff)':>22}" for _ in args.budgets))
    for images in args.images:
        scoring = rebatch(x[:images], y[:images], search.batch_size)
        for criterion in args.criteria:
            for per_flop in (value == "true" for value in args.per_flop):
                evaluator = CandidateEvaluator(network, space, calib, scoring, bn=search.bn)
                started = time.perf_counter()
                points = greedy_slim(evaluator, reference=reference, criterion=criterion, per_flop=per_flop, floor_flops=floor)
                seconds = time.perf_counter() - started
                cells = []
                for budget in args.budgets:
                    result = extrapolate_within(
                        points,
                        [Budget("flops", parse_size(budget))],
                        projected_uniform=reference,
                        full_uniform=full,
                        costs=costs,
                        stacking=extrapolate.stacking,
                        divisor=model.divisor,
                        tolerance=extrapolate.tolerance,
                        point_rule=extrapolate.point,
                    )
                    selected = next(p for p in points if p.step == result["selected_step"]).channels
                    uniform = projected_uniform(space, reference, result["uniform"], full)
                    a = judge_eval.commit(selected).accuracy
                    b = judge_eval.commit(uniform).accuracy
                    cells.append(f"{a:5.1f}/{b:5.1f} ({a - b:+5.1f})")
                print(
                    f"{criterion:9}  {images:6d}  {str(per_flop).lower():8}  {len(points) - 1:5d}  {seconds:7.0f}  "
                    + "  ".join(f"{c:>22}" for c in cells),
                    flush=True,
                )


if __name__ == "__main__":
    main()
