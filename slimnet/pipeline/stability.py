"""stability stage: would the search pick the same widths again? The budget's point selected on a
second held-out sample and on a second supernet (another seed), compared with the stage's own.

A search whose decisions follow its held-out sample or its supernet's seed gives a network that
is one draw of many; one whose decisions hold is measuring the supernet's ranking. The
comparison is the cosine similarity of per-unit width multipliers (1.0: the same channels up to
scale), beside the same similarity for the random draws, which is what "unrelated" looks like in
this space. Off by default (diagnostics.stability): a supernet training and two searches."""

from __future__ import annotations

import shutil
import statistics
from pathlib import Path

import torch

from slimnet import atomic
from slimnet.config import ExtrapolateParams, ModelParams, Params, SearchParams, SupernetParams, TransferParams
from slimnet.console.errors import SlimnetError
from slimnet.console.output import print_summary
from slimnet.deploy.latency_model import LatencyTable
from slimnet.optimizers.budgets import Costs, requested, selected_index
from slimnet.optimizers.trajectory import Trajectory
from slimnet.pipeline.common import CHECKPOINTS, DATA, STAGES, pick_device, read_json
from slimnet.pipeline.search import run_search
from slimnet.pipeline.specs import check_network, dataset_resolution, full_uniform
from slimnet.pipeline.supernet import run_supernet
from slimnet.stats.ranking import width_similarity


def run_stability(
    model: ModelParams,
    transfer_params: TransferParams,
    supernet: SupernetParams,
    search: SearchParams,
    extrapolate: ExtrapolateParams,
    *,
    device: torch.device,
    out_dir: Path = STAGES / "stability",
    work_dir: Path = CHECKPOINTS / "stability",
) -> dict:
    """Search again on held-out sample 1 and on a supernet of seed supernet.seed + 1; write how
    alike the selected points are (stages/stability/metrics.json)."""
    if search.method != "autoslim":
        raise SlimnetError(
            f"diagnostics.stability repeats the AutoSlim search on a second supernet, and search.method is {search.method}: "
            "set diagnostics.stability: false (or search.method: autoslim)"
        )
    main = Trajectory.load(STAGES / "search" / "trajectory.json")
    projected = read_json(STAGES / "extrapolate" / "projected.json", "extrapolate")
    # Each rerun resumes from its own checkpoints if killed; the work directory goes once all is written.
    run_search(search, device=device, out_dir=work_dir / "sample", sample=1)
    seed = supernet.seed + 1
    run_supernet(model, transfer_params, supernet.model_copy(update={"seed": seed}), device=device, out_dir=work_dir / "seed")
    run_search(search, device=device, out_dir=work_dir / "seed", supernet_file=work_dir / "seed" / "supernet.pt")
    others = {
        "held_out_sample": Trajectory.load(work_dir / "sample" / "trajectory.json"),
        "supernet_seed": Trajectory.load(work_dir / "seed" / "trajectory.json"),
    }
    select = _selector(model, search, extrapolate, main)
    chosen = main.points[select(main)]
    base = dict(main.reference.channels)
    record: dict = {
        "enabled": True,
        "selected_step": chosen.step,
        "held_out_images": search.eval_images,
        "supernet_seed": seed,
        "similarity": {},
        "steps": {},
    }
    for name, trajectory in others.items():
        point = trajectory.points[select(trajectory)]
        record["similarity"][name] = round(width_similarity(dict(chosen.channels), dict(point.channels), base), 4)
        record["steps"][name] = point.step
    # What unrelated widths of the same cost look like: each draw, scaled to the point's FLOPs.
    draws = [entry["channels"] for name, entry in projected.items() if name.startswith("random")]
    if draws:
        similarities = [width_similarity(dict(chosen.channels), draw, base) for draw in draws]
        record["similarity"]["random_draws_mean"] = round(statistics.fmean(similarities), 4)
    atomic.write_json(out_dir / "metrics.json", record)
    shutil.rmtree(work_dir, ignore_errors=True)
    return record


def _selector(model: ModelParams, search: SearchParams, extrapolate: ExtrapolateParams, main: Trajectory):
    """The extrapolate stage's rule for picking a trajectory's point under the budgets."""
    meta = read_json(DATA / "meta.json", "data")
    costs = Costs(LatencyTable.load(STAGES / "latency" / "table.json"))
    budgets = requested(search)
    full = full_uniform(model, meta)

    def select(trajectory: Trajectory) -> int:
        return selected_index(
            trajectory.points,
            budgets,
            projected_uniform=main.reference,
            full_uniform=full,
            costs=costs,
            stacking=extrapolate.stacking,
            divisor=model.divisor,
            point_rule=extrapolate.point,
        )

    return select


def command(p: Params, device: str) -> None:
    """`python -m slimnet stability`: search the budget's point again, print the record."""
    check_network(p, dataset_resolution())
    record = run_stability(p.model, p.transfer, p.supernet, p.search, p.extrapolate, device=pick_device(device))
    print_summary("stability", record)
