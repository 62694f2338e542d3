"""extrapolate stage: the trajectory point for the budgets, mapped to the full network and matched to the binding budget, and the uniform baseline on it."""

from __future__ import annotations

from pathlib import Path

from slimnet import atomic, transfer
from slimnet.arch import save_spec
from slimnet.budgets import METRICS, Budget, Costs, extrapolate_within
from slimnet.config import ExtrapolateParams, ModelParams, SearchParams
from slimnet.latency import LatencyTable, predict_spec_ms
from slimnet.pipeline.common import DATA, STAGES, read_json, write_csv
from slimnet.pipeline.specs import full_uniform
from slimnet.search import Trajectory


def run_extrapolate(
    model: ModelParams, search: SearchParams, extrapolate: ExtrapolateParams, out_dir: Path = STAGES / "extrapolate"
) -> dict:
    meta = read_json(DATA / "meta.json", "data")
    trajectory = Trajectory.load(STAGES / "search" / "trajectory.json")
    table = LatencyTable.load(STAGES / "latency" / "table.json")
    full = full_uniform(model, meta)
    budgets = [Budget(metric, getattr(search, metric)) for metric in METRICS if getattr(search, metric) is not None]
    costs = Costs(table)
    # Every budget is checked against the trajectory before any matching: an impossible one
    # fails here, naming itself and its possible range, with nothing written.
    result = extrapolate_within(
        trajectory.points,
        budgets,
        projected_uniform=trajectory.reference,
        full_uniform=full,
        costs=costs,
        stacking=extrapolate.stacking,
        divisor=model.divisor,
        tolerance=extrapolate.tolerance,
    )
    optimized, uniform = result["optimized"], result["uniform"]
    rows = []
    for opt_row, uni_row in zip(transfer.channels_per_layer(optimized), transfer.channels_per_layer(uniform)):
        rows.append(
            {"layer": opt_row["layer"], "name": opt_row["name"], "optimized": opt_row["channels"], "uniform": uni_row["channels"]}
        )
    write_csv(out_dir / "channels.csv", rows)
    summary = {
        "target": {metric: getattr(search, metric) for metric in METRICS},
        "binding": result["binding"],
        "selected_step": result["selected_step"],
        "multiplier": result["multiplier"],
        "uniform_width": result["uniform_width"],
        "full_uniform": _costs(full, table),
        "optimized": _costs(optimized, table),
        "uniform": _costs(uniform, table),
    }
    atomic.write_json(out_dir / "summary.json", summary)
    save_spec(full, out_dir / "reference.json")
    save_spec(uniform, out_dir / "uniform.json")
    save_spec(optimized, out_dir / "optimized.json")
    return summary


def _costs(spec, table: LatencyTable) -> dict:
    """Every budget's figure for a network (latency: predicted by the table, in ms)."""
    c = spec.cost()
    return {"flops": c.flops, "params": c.params, "memory": c.memory, "latency_ms": round(predict_spec_ms(table, spec), 4)}
