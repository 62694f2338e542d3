"""extrapolate stage: the trajectory point for the target, mapped to the full network, and the uniform baseline."""

from __future__ import annotations

from pathlib import Path

from slimnet import atomic, transfer
from slimnet.arch import save_spec
from slimnet.config import ExtrapolateParams, ModelParams, SearchParams
from slimnet.errors import SlimnetError
from slimnet.pipeline.common import DATA, STAGES, read_json, write_csv
from slimnet.pipeline.specs import full_uniform
from slimnet.search import Trajectory


def run_extrapolate(
    model: ModelParams, search: SearchParams, extrapolate: ExtrapolateParams, out_dir: Path = STAGES / "extrapolate"
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
        )
    except transfer.OutOfRange as error:
        key = "search.flops" if search.flops is not None else "search.params"
        raise SlimnetError(f"{key}: {error}") from None
    optimized, uniform = result["optimized"], result["uniform"]
    rows = []
    for opt_row, uni_row in zip(transfer.channels_per_layer(optimized), transfer.channels_per_layer(uniform)):
        rows.append(
            {"layer": opt_row["layer"], "name": opt_row["name"], "optimized": opt_row["channels"], "uniform": uni_row["channels"]}
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
    }
    atomic.write_json(out_dir / "summary.json", summary)
    save_spec(full, out_dir / "reference.json")
    save_spec(uniform, out_dir / "uniform.json")
    save_spec(optimized, out_dir / "optimized.json")
    return summary
