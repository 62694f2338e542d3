"""extrapolate stage: the trajectory point for the target, mapped to the full network, and the uniform baseline."""

from __future__ import annotations

from pathlib import Path

from slimnet import atomic, transfer
from slimnet.arch import save_spec
from slimnet.baselines import random_network
from slimnet.config import ExtrapolateParams, ModelParams, SearchParams, SupernetParams
from slimnet.errors import SlimnetError
from slimnet.pipeline.common import DATA, STAGES, read_json, write_csv
from slimnet.pipeline.specs import full_uniform
from slimnet.search import Trajectory
from slimnet.space import ChannelSpace


def run_extrapolate(
    model: ModelParams,
    search: SearchParams,
    extrapolate: ExtrapolateParams,
    supernet: SupernetParams,
    out_dir: Path = STAGES / "extrapolate",
) -> dict:
    meta = read_json(DATA / "meta.json", "data")
    trajectory = Trajectory.load(STAGES / "search" / "trajectory.json")
    full = full_uniform(model, meta)
    try:
        result = transfer.extrapolate(
            trajectory.points,
            projected_uniform=trajectory.reference,
            full_uniform=full,
            target_flops=search.flops,
            target_params=search.params,
            stacking=extrapolate.stacking,
            divisor=model.divisor,
            tolerance=extrapolate.tolerance,
            point_rule=extrapolate.point,
        )
    except transfer.OutOfRange as error:
        key = "search.flops" if search.flops is not None else "search.params"
        raise SlimnetError(f"{key}: {error}") from None
    optimized, uniform = result["optimized"], result["uniform"]
    # The random baseline: a draw from the supernet's space, at the optimized network's cost.
    metric = result["target"]["metric"]
    space = ChannelSpace.around(
        trajectory.reference.blueprint(), supernet.min_width, supernet.max_width, supernet.groups, supernet.divisor
    )
    random, drawn = random_network(
        space,
        projected_uniform=trajectory.reference,
        full_uniform=full,
        target=getattr(optimized.cost(), metric),
        metric=metric,
        stacking=extrapolate.stacking,
        divisor=model.divisor,
        tolerance=extrapolate.tolerance,
        seed=extrapolate.random_seed,
    )
    rows = []
    layers = zip(*(transfer.channels_per_layer(spec) for spec in (optimized, uniform, random)))
    for opt_row, uni_row, random_row in layers:
        rows.append(
            {
                "layer": opt_row["layer"],
                "name": opt_row["name"],
                "optimized": opt_row["channels"],
                "uniform": uni_row["channels"],
                "random": random_row["channels"],
            }
        )
    write_csv(out_dir / "channels.csv", rows)
    summary = {
        "target": {"flops": search.flops, "params": search.params},
        "selected_step": result["selected_step"],
        "multiplier": result["multiplier"],
        "uniform_width": result["uniform_width"],
        "full_uniform": {"flops": full.cost().flops, "params": full.cost().params},
        "optimized": {"flops": optimized.cost().flops, "params": optimized.cost().params},
        "uniform": {"flops": uniform.cost().flops, "params": uniform.cost().params},
        "random": {"flops": random.cost().flops, "params": random.cost().params},
    }
    atomic.write_json(out_dir / "summary.json", summary)
    save_spec(full, out_dir / "reference.json")
    save_spec(uniform, out_dir / "uniform.json")
    save_spec(optimized, out_dir / "optimized.json")
    save_spec(random, out_dir / "random.json")
    return summary
