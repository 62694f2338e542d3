"""search stage: the greedy-slimming trajectory from the largest configuration to the floor,
resumable after a kill from its last committed step."""

from __future__ import annotations

import hashlib
import sys
import time
from pathlib import Path

import torch
from pydantic import BaseModel, ConfigDict

from slimnet import atomic
from slimnet.config import BUDGET_KEYS, Params, SearchParams
from slimnet.console.errors import SlimnetError
from slimnet.console.output import print_summary
from slimnet.console.progress import reporter
from slimnet.datasets.load import fixed_batches, load_split
from slimnet.optimizers.autoslim import Batches, CandidateEvaluator, greedy_slim, scored_point
from slimnet.optimizers.morphnet_sweep import threshold_trajectory
from slimnet.optimizers.trajectory import Trajectory, TrajectoryPoint
from slimnet.parallel.world import SINGLE, World
from slimnet.pipeline.common import CHECKPOINTS, DATA, OPTIMIZER_NETWORKS, STAGES, write_csv, write_timings
from slimnet.pipeline.ranks import stage_processes
from slimnet.space.flops import cost
from slimnet.space.spec import ArchSpec
from slimnet.training.checkpoint import file_sha256, fingerprint
from slimnet.training.sandwich import load_decided_channels, load_scores, load_supernet_file, read_network_file

SUPERNET = OPTIMIZER_NETWORKS["autoslim"]


def run_search(
    search: SearchParams,
    *,
    device: torch.device,
    out_dir: Path = STAGES / "search",
    world: World = SINGLE,
    supernet_file: Path | None = None,
    sample: int = 0,
) -> dict:
    """The greedy trajectory; with several ranks each scores its share of the held-out batches
    (calibration, for bn: recalibrate, runs whole on every rank) and rank 0 writes the outputs.

    ``sample`` picks the held-out images: 0 is the stage's, 1 the next search.eval_images of the
    same order (disjoint from them; the stability stage searches on it).
    Rank 0 checkpoints the trajectory after every step; a killed search resumes from its last
    step and writes the bytes an unbroken one would (:class:`SearchCheckpoint`).

    With search.method morphnet the trajectory is MorphNet's network read at every threshold
    (optimizers.morphnet_sweep), from the largest configuration to the same floor; with dmcp it
    is the largest configuration and the one DMCP decided for the budgets (:func:`decided_trajectory`)."""
    supernet_file = OPTIMIZER_NETWORKS[search.method] if supernet_file is None else supernet_file
    blob = read_network_file(supernet_file)
    network, reference, space = load_supernet_file(supernet_file, device, blob)
    calib_set = load_split(DATA / "search" / "train.pt", device)
    val_set = load_split(DATA / "search" / "val.pt", device)
    calib = fixed_batches(calib_set, search.calib_images, search.batch_size, search.seed)
    evals = fixed_batches(val_set, search.eval_images, search.batch_size, search.seed + 1, skip=sample * search.eval_images)
    if not evals:
        raise SlimnetError(
            f"held-out sample {sample} starts after image {sample * search.eval_images} and data/search/val.pt has "
            f"{len(val_set)}: lower search.eval_images"
        )
    shares = rank_batches(evals, search, world)
    evaluator = CandidateEvaluator(network, space, calib, shares, bn=search.bn, world=world)
    max_flops = cost(space.blueprint, space.maximum, reference.resolution).flops
    checkpoint = SearchCheckpoint(search_key(supernet_file, search, calib, evals))
    resume, seconds_before = checkpoint.load(world)
    started = time.perf_counter()
    with reporter(silent=not world.is_main) as report:
        if resume:
            last = resume[-1]
            report.line(
                f"search: resuming after step {last.step} ({100 * last.flops / max_flops:.1f}% of the largest "
                f"configuration's FLOPs, floor {100 * search.floor:g}%)"
            )

        def save(points: list[TrajectoryPoint]) -> None:
            if world.is_main:
                checkpoint.save(points, seconds_before + time.perf_counter() - started)

        if search.method == "dmcp":
            points = decided_trajectory(evaluator, load_decided_channels(supernet_file, blob), reference=reference)
        elif search.method == "morphnet":
            points = threshold_trajectory(
                evaluator,
                load_scores(supernet_file, blob),
                reference=reference,
                floor_flops=int(search.floor * max_flops),
                report=report,
            )
        else:
            points = greedy_slim(
                evaluator,
                reference=reference,
                criterion=search.criterion,
                per_flop=search.per_flop,
                floor_flops=int(search.floor * max_flops),
                report=report,
                resume=resume,
                on_step=save,
            )
    seconds = seconds_before + time.perf_counter() - started
    if not world.is_main:
        return {"steps": len(points) - 1, "seconds": round(seconds, 2)}
    Trajectory(reference=reference, points=points, method=search.method).save(out_dir / "trajectory.json")
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
    checkpoint.clear()
    return {**metrics, "seconds": round(seconds, 2)}


def decided_trajectory(evaluator: CandidateEvaluator, channels: dict[str, int], *, reference: ArchSpec) -> list[TrajectoryPoint]:
    """DMCP decides one configuration for the budgets: the largest configuration, then it, each
    scored on the held-out images (extrapolate carries the last point over whatever its cost)."""
    largest = evaluator.space.maximum
    first = scored_point(0, None, largest, evaluator.commit(largest), 0, reference=reference)
    shrunk = ",".join(unit for unit in channels if channels[unit] < largest[unit])
    decided = scored_point(1, shrunk, channels, evaluator.commit(channels), 1, reference=reference)
    evaluator.evaluations += 1
    return [first, decided]


class SearchProgress(BaseModel):
    """A search's checkpoint: the points committed so far and the seconds they took."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    points: list[TrajectoryPoint]
    seconds: float


class SearchCheckpoint:
    """The trajectory so far, rewritten (atomically) after every step under .checkpoints/search/,
    keyed by what the trajectory depends on; removed once the stage's outputs are written.

    A step costs a forward of the held-out images per unit; rewriting the JSON is noise beside it
    (3 ms for 35 points, 8 ms for 500 points of 60 units, 0.9 MB). A resumed search replays the
    committed configurations (see :func:`greedy_slim`).
    Every rank reads the file (rank 0 alone writes it) and the ranks check that they found the
    same number of steps, so they replay the same commits (else all start from step 0).
    """

    def __init__(self, key: str, directory: Path = CHECKPOINTS / "search"):
        self.path = Path(directory) / f"{key}.json"

    def load(self, world: World = SINGLE) -> tuple[list[TrajectoryPoint], float]:
        """(points, seconds) to resume from; ([], 0.0) when there is nothing to resume."""
        progress = None
        if self.path.is_file():
            try:
                progress = SearchProgress.model_validate_json(self.path.read_text())
            except (OSError, ValueError) as error:
                if world.is_main:
                    reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
                    print(
                        f"warning: search checkpoint {self.path} is unreadable ({reason}); discarded, the search "
                        "restarts from step 0",
                        file=sys.stderr,
                    )
        steps = len(progress.points) if progress is not None else 0
        if world.size > 1:
            sums = world.all_reduce_sum(torch.tensor([steps, steps * steps], dtype=torch.float64))
            if float(sums[0]) ** 2 != world.size * float(sums[1]):  # not every rank found the same
                if world.is_main:
                    print(
                        f"warning: the ranks found different search checkpoints under {self.path.parent} "
                        "(a file system they do not share?); the search restarts from step 0",
                        file=sys.stderr,
                    )
                return [], 0.0
        if progress is None:
            return [], 0.0
        return list(progress.points), progress.seconds

    def save(self, points: list[TrajectoryPoint], seconds: float) -> None:
        atomic.write_text(self.path, SearchProgress(points=points, seconds=seconds).model_dump_json() + "\n")

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)


def search_key(supernet: Path, search: SearchParams, calib: Batches, evals: Batches) -> str:
    """Fingerprint of what a trajectory depends on: the supernet file's bytes, the search params
    (not the budgets, which only extrapolate reads) and the calibration and held-out images."""
    return fingerprint(
        {
            "supernet": file_sha256(supernet),
            "search": search.model_dump(mode="json", exclude=set(BUDGET_KEYS)),
            "calib": _sha256_batches(calib),
            "evals": _sha256_batches(evals),
        }
    )


def _sha256_batches(batches: Batches) -> str:
    digest = hashlib.sha256()
    for batch in batches:
        for tensor in batch:
            flat = tensor.detach().cpu().contiguous()  # logical (NCHW) order, whatever the memory format
            digest.update(f"{tuple(flat.shape)} {flat.dtype};".encode())
            digest.update(flat.view(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


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


def command(p: Params, device: str, relaunch: list[str]) -> None:
    """`python -m slimnet search`: on this process or on torchrun's ranks, each running the
    command line ``relaunch``; the main rank prints the summary."""
    with stage_processes(p.resources, relaunch, device) as rank:
        if rank is not None:
            world, on = rank
            summary = run_search(p.search, device=on, world=world)
            if world.is_main:
                print_summary("search", summary)
