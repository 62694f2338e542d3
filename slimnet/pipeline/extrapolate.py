"""extrapolate stage: the trajectory point for the budgets, mapped to the full network and matched to the binding budget, and the uniform baseline on it."""

from __future__ import annotations

from pathlib import Path

from slimnet import atomic, transfer
from slimnet.arch import save_spec
from slimnet.baselines import projected_uniform, random_network
from slimnet.budgets import METRICS, Budget, Costs, extrapolate_within
from slimnet.config import ExtrapolateParams, ModelParams, SearchParams, SupernetParams
from slimnet.latency import LatencyTable, predict_spec_ms
from slimnet.pipeline.common import DATA, STAGES, pick_device, read_json, write_csv
from slimnet.pipeline.estimates import supernet_estimates
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
        point_rule=extrapolate.point,
    )
    optimized, uniform = result["optimized"], result["uniform"]
    # The random baseline: a draw from the supernet's space, at the optimized network's cost.
    metric = result["binding"]
    space = ChannelSpace.around(
        trajectory.reference.blueprint(), supernet.min_width, supernet.max_width, supernet.groups, supernet.divisor
    )
    random, drawn = random_network(
        space,
        projected_uniform=trajectory.reference,
        full_uniform=full,
        target=costs.of_spec(metric, optimized),
        metric=metric,
        measure=costs.function(metric),
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
        "target": {metric: getattr(search, metric) for metric in METRICS},
        "binding": result["binding"],
        "selected_step": result["selected_step"],
        "multiplier": result["multiplier"],
        "uniform_width": result["uniform_width"],
        "full_uniform": _costs(full, table),
        "optimized": _costs(optimized, table),
        "uniform": _costs(uniform, table),
        "random": _costs(random, table),
    }
    atomic.write_json(out_dir / "summary.json", summary)
    save_spec(full, out_dir / "reference.json")
    save_spec(uniform, out_dir / "uniform.json")
    save_spec(optimized, out_dir / "optimized.json")
    save_spec(random, out_dir / "random.json")
    # Each network as the supernet configuration it stands for, and the supernet's estimate of
    # it, so evaluate can check that the supernet ranks the networks as training does.
    selected = next(p for p in trajectory.points if p.step == result["selected_step"])
    configs = {
        "optimized": dict(selected.channels),
        "uniform": projected_uniform(space, trajectory.reference, uniform, full),
        "random": drawn,
    }
    estimates = supernet_estimates(configs, search, pick_device("auto"))
    atomic.write_json(
        out_dir / "projected.json",
        {name: {"supernet_top1": estimates[name], "channels": config} for name, config in configs.items()},
    )
    return summary


def _costs(spec, table: LatencyTable) -> dict:
    """Every budget's figure for a network (latency: predicted by the table, in ms)."""
    c = spec.cost()
    return {"flops": c.flops, "params": c.params, "memory": c.memory, "latency_ms": round(predict_spec_ms(table, spec), 4)}
