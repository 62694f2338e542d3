"""search stage: the greedy-slimming trajectory from the largest configuration to the floor."""

from __future__ import annotations

import time
from pathlib import Path

import torch

from slimnet import atomic
from slimnet.config import SearchParams
from slimnet.data import fixed_batches, load_split
from slimnet.distributed import SINGLE, World
from slimnet.errors import SlimnetError
from slimnet.flops import cost
from slimnet.pipeline.common import DATA, STAGES, write_csv, write_timings
from slimnet.progress import reporter
from slimnet.search import CandidateEvaluator, Trajectory, greedy_slim
from slimnet.supernet import load_supernet_file


def run_search(search: SearchParams, *, device: torch.device, out_dir: Path = STAGES / "search", world: World = SINGLE) -> dict:
    """The greedy trajectory; with several ranks each scores its share of the held-out batches
    (calibration, for bn: recalibrate, runs whole on every rank) and rank 0 writes the outputs."""
    network, reference, space = load_supernet_file(STAGES / "supernet" / "supernet.pt", device)
    calib_set = load_split(DATA / "search" / "train.pt", device)
    val_set = load_split(DATA / "search" / "val.pt", device)
    calib = fixed_batches(calib_set, search.calib_images, search.batch_size, search.seed)
    evals = fixed_batches(val_set, search.eval_images, search.batch_size, search.seed + 1)
    shares = rank_batches(evals, search, world)
    evaluator = CandidateEvaluator(network, space, calib, shares, bn=search.bn, world=world)
    max_flops = cost(space.blueprint, space.maximum, reference.resolution).flops
    started = time.perf_counter()
    with reporter(silent=not world.is_main) as report:
        points = greedy_slim(
            evaluator,
            reference=reference,
            criterion=search.criterion,
            per_flop=search.per_flop,
            floor_flops=int(search.floor * max_flops),
            report=report,
        )
    seconds = time.perf_counter() - started
    if not world.is_main:
        return {"steps": len(points) - 1, "seconds": round(seconds, 2)}
    Trajectory(reference=reference, points=points).save(out_dir / "trajectory.json")
    write_csv(
        out_dir / "trajectory.csv",
        [
            {"step": p.step, "flops": p.flops, "accuracy": p.accuracy, "loss": p.loss, "slimmed": p.slimmed, "margin": p.margin}
            for p in points
        ],
    )
    steps = len(points) - 1
    eval_images = sum(len(y) for _, y in evals)
    metrics = {
        "steps": steps,
        "evaluations": evaluator.evaluations,
        "eval_images": eval_images,
        # Each candidate is one forward of the held-out images through the configuration it
        # scores (an upper bound: the prefix cache skips the blocks a candidate leaves alone).
        "search_flops": sum(p.evaluations * prev.flops * eval_images for prev, p in zip(points, points[1:])),
        "max_accuracy": points[0].accuracy,
        "floor_accuracy": points[-1].accuracy,
    }
    atomic.write_json(out_dir / "metrics.json", metrics)
    write_timings(out_dir, {"seconds": round(seconds, 2), "seconds_per_step": round(seconds / max(steps, 1), 4)})
    return {**metrics, "seconds": round(seconds, 2)}


def rank_batches(evals: list, search: SearchParams, world: World) -> list:
    """This rank's held-out batches. With bn: online a batch normalizes itself, so ranks must hold
    whole batches for scores to equal one process's; in eval mode (recalibrate) any split is exact."""
    if search.bn == "online" and len(evals) < world.size:
        raise SlimnetError(
            f"search.bn online scores whole batches, and search.eval_images / search.batch_size gives {len(evals)} "
            f"for {world.size} processes: lower search.batch_size to at most {max(1, search.eval_images // world.size)} "
            "or use fewer processes (resources.nproc)"
        )
    return world.share_batches(evals)
