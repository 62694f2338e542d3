"""How often does a greedy-slimming decision change with the held-out image sample?

At committed configurations of a real search (points of stages/search/trajectory.json), every
candidate is scored on two disjoint, class-balanced samples of the search's held-out split, each
of N images, and ranked exactly as greedy_slim ranks them. A decision that flips between the two
samples is one the sample made, not the supernet. Also prints seconds per step for each N.

    python benchmarks/search_sample_agreement.py [--project .] [--images 256 512 1024 2048] [--points 8]

Run where `dvc repro search` has run (it reads the supernet, the search splits and the trajectory).
Without a trajectory (only `dvc repro supernet`), the configurations are seeded random draws
from the supernet's space instead of committed ones (a proxy: the search never visits most).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from slimnet.config import load_params
from slimnet.datasets.load import fixed_batches, load_split
from slimnet.optimizers.autoslim import CandidateEvaluator, drop, rank_value
from slimnet.optimizers.trajectory import Trajectory
from slimnet.space.flops import cost
from slimnet.training.sandwich import load_supernet_file


def ranking(evaluator: CandidateEvaluator, config: dict[str, int], resolution: int, criterion: str, per_flop: bool) -> list[str]:
    """Units ordered best first, by greedy_slim's key (value, loss, -saved, unit order)."""
    space = evaluator.space
    base = evaluator.commit(config)
    current = cost(space.blueprint, config, resolution).flops
    keyed = []
    for order, unit in enumerate(space.choices):
        smaller = space.smaller(config, unit)
        if smaller is None:
            continue
        candidate = {**config, unit: smaller}
        saved = current - cost(space.blueprint, candidate, resolution).flops
        score = evaluator.score(candidate, unit)
        keyed.append(((rank_value(drop(base, score, criterion), saved / current, per_flop), score.loss, -saved, order), unit))
    return [unit for _, unit in sorted(keyed)]


def split(batches, size: int):
    """Re-batch one sample into search-sized batches (online BN uses each batch's statistics)."""
    x = torch.cat([b[0] for b in batches])
    y = torch.cat([b[1] for b in batches])
    return [(x[i : i + size], y[i : i + size]) for i in range(0, len(y), size)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", type=Path, default=Path("."))
    parser.add_argument("--images", type=int, nargs="+", default=[256, 512, 1024, 2048])
    parser.add_argument("--points", type=int, default=8, help="trajectory points examined (evenly spaced)")
    parser.add_argument("--criterion", default=None, help="accuracy | loss (default: params.yaml)")
    args = parser.parse_args()

    root = args.project
    search = load_params(root / "params.yaml").search
    criterion = args.criterion or search.criterion
    network, reference, space = load_supernet_file(root / "stages/supernet/supernet.pt", torch.device("cpu"))
    val = load_split(root / "data/search/val.pt", torch.device("cpu"))
    calib = []
    if search.bn == "recalibrate":
        train = load_split(root / "data/search/train.pt", torch.device("cpu"))
        calib = fixed_batches(train, search.calib_images, search.batch_size, search.seed)
    trajectory = root / "stages/search/trajectory.json"
    if trajectory.is_file():
        points = Trajectory.load(trajectory).points[:-1]
        picked = [points[round(i * (len(points) - 1) / max(args.points - 1, 1))] for i in range(args.points)]
        chosen, where = [p.channels for p in picked], f"trajectory steps {[p.step for p in picked]}"
    else:
        generator = torch.Generator().manual_seed(0)
        chosen, where = [space.sample(generator) for _ in range(args.points)], f"{args.points} random configurations"
    print(f"criterion {criterion}, bn {search.bn}, per_flop {search.per_flop}; {len(val)} held-out images; {where}")
    print("images  same winner  winner in other's top 3  seconds/step (one sample)")
    for n in args.images:
        if 2 * n > len(val):
            print(f"{n:6d}  skipped: two disjoint samples need {2 * n} images")
            continue
        both = fixed_batches(val, 2 * n, n, search.seed + 1)  # class round-robin: each half balanced
        samples = [split([both[0]], search.batch_size), split([both[1]], search.batch_size)]
        same = top3 = 0
        seconds = []
        for config in chosen:
            orders = []
            for sample in samples:
                evaluator = CandidateEvaluator(network, space, calib, sample, bn=search.bn)
                started = time.perf_counter()
                orders.append(ranking(evaluator, config, reference.resolution, criterion, search.per_flop))
                seconds.append(time.perf_counter() - started)
            same += orders[0][0] == orders[1][0]
            top3 += orders[0][0] in orders[1][:3] and orders[1][0] in orders[0][:3]
        k = len(chosen)
        print(
            f"{n:6d}  {same}/{k} ({same / k:.0%})     {top3}/{k} ({top3 / k:.0%})                {statistics.median(seconds):.2f}"
        )


if __name__ == "__main__":
    main()
