"""extrapolate stage: the trajectory point for the budgets, mapped to the full network and matched to the binding budget, and the uniform and random baselines on it."""

from __future__ import annotations

import statistics
from pathlib import Path

from slimnet import atomic
from slimnet.config import ExtrapolateParams, ModelParams, Params, SearchParams, SupernetParams
from slimnet.console.output import print_summary
from slimnet.deploy.latency_model import LatencyTable, predict_spec_ms
from slimnet.optimizers import transfer
from slimnet.optimizers.baselines import projected_uniform
from slimnet.optimizers.budgets import METRICS, Costs, requested, show
from slimnet.optimizers.trajectory import Trajectory
from slimnet.optimizers.transfer import AboveRange
from slimnet.pipeline.common import DATA, STAGES, pick_device, read_json, write_csv
from slimnet.pipeline.estimates import supernet_estimates
from slimnet.pipeline.networks import random_name, save_random_specs
from slimnet.pipeline.presets import closest, network_name, presets
from slimnet.pipeline.selection import extrapolate_budgets, supernet_space
from slimnet.pipeline.specs import check_network, dataset_resolution, full_uniform
from slimnet.space.flops import cost
from slimnet.space.spec import save_spec


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
    budgets = requested(search)
    costs = Costs(table)
    space = supernet_space(trajectory, supernet)
    # Every budget is checked against the trajectory before any matching: an impossible one
    # fails here, naming itself and its possible range, with nothing written. The random
    # baselines: draws from the supernet's space, carried over like the selected point and
    # matched to the optimized network's cost, on the same channel grid as it and uniform.
    try:
        result = extrapolate_budgets(
            trajectory, budgets, full=full, costs=costs, space=space, model=model, extrapolate=extrapolate
        )
    except AboveRange as error:
        raise AboveRange(f"{error}; {_why_above(error, model, supernet, full, costs)}", error.metric, error.target) from None
    optimized, uniform = result["optimized"], result["uniform"]
    randoms = {random_name(seed): spec for seed, spec in result["random"].items()}
    networks = {"optimized": optimized, "uniform": uniform, **randoms}
    per_layer = {name: transfer.channels_per_layer(spec) for name, spec in networks.items()}
    rows = []
    for index, first in enumerate(per_layer["optimized"]):
        row = {"layer": first["layer"], "name": first["name"]}
        row.update({name: layers[index]["channels"] for name, layers in per_layer.items()})
        # One line for the plot whatever the number of draws: the draws' mean width of each layer.
        row["random_mean"] = round(statistics.fmean(per_layer[name][index]["channels"] for name in randoms), 2)
        rows.append(row)
    write_csv(out_dir / "channels.csv", rows)
    summary = {
        "target": {metric: getattr(search, metric) for metric in METRICS},
        "binding": result["binding"],
        "selected_step": result["selected_step"],
        "multiplier": result["multiplier"],
        "uniform_width": result["uniform_width"],
        # The channel grid every network is matched on: model.divisor, or where one of them cannot
        # land within extrapolate.tolerance on it, the coarsest of 4, 2, 1 where all of them do
        # (then divisor_fallback is true).
        "divisor": result["divisor"],
        "divisor_fallback": result["divisor_fallback"],
        "full_uniform": _costs(full, table),
        **{name: _costs(spec, table) for name, spec in networks.items()},
    }
    atomic.write_json(out_dir / "summary.json", summary)
    save_spec(full, out_dir / "reference.json")
    save_spec(uniform, out_dir / "uniform.json")
    save_spec(optimized, out_dir / "optimized.json")
    save_random_specs(randoms, out_dir / "random.json")
    # Each network as the supernet configuration it stands for, and the supernet's estimate of
    # it, so evaluate can check that the supernet ranks the networks as training does. A draw's
    # configuration is the one carried over: scaled to the selected point's projected FLOPs.
    selected = next(p for p in trajectory.points if p.step == result["selected_step"])
    configs = {
        "optimized": dict(selected.channels),
        "uniform": projected_uniform(space, trajectory.reference, uniform, full),
        **{random_name(seed): config for seed, config in result["random_projected"].items()},
    }
    estimates = supernet_estimates(configs, search, pick_device("auto"))
    resolution = trajectory.reference.resolution
    projected = {
        name: {"supernet_top1": estimates[name], "flops": cost(space.blueprint, config, resolution).flops, "channels": config}
        for name, config in configs.items()
    }
    for seed, drawn in result["random_drawn"].items():  # what the draw cost before it was scaled
        projected[random_name(seed)]["drawn_flops"] = cost(space.blueprint, drawn, resolution).flops
    atomic.write_json(out_dir / "projected.json", projected)
    return summary


def _why_above(error: AboveRange, model: ModelParams, supernet: SupernetParams, full, costs: Costs) -> str:
    """Why a budget is out of reach (what the configured network costs) and a preset that fits it."""
    metric, target = error.metric, error.target
    network = network_name(model.arch, model.width, full.resolution)
    why = (
        f"the configured network, {network}, costs {show(metric, costs.of_spec(metric, full))} "
        f"and the search spans its widths {supernet.min_width:g}x to {supernet.max_width:g}x"
    )
    fits = closest(metric, target, presets())
    if not fits:
        return f"{why}: for {show(metric, target)} raise model.width, data.resolution or choose a larger model.arch"
    suggestion = fits[0]
    return (
        f"{why}: {show(metric, target)} is a budget for a larger network, e.g. {suggestion.path} "
        f"({suggestion.network}: {show(metric, suggestion.costs[metric])})"
    )


def _costs(spec, table: LatencyTable) -> dict:
    """Every budget's figure for a network (latency: predicted by the table, in ms)."""
    c = spec.cost()
    return {"flops": c.flops, "params": c.params, "memory": c.memory, "latency_ms": round(predict_spec_ms(table, spec), 4)}


def command(p: Params) -> None:
    """`python -m slimnet extrapolate`: pick, extrapolate and match the budgets' networks, print the summary."""
    check_network(p, dataset_resolution())
    print_summary("extrapolate", run_extrapolate(p.model, p.search, p.extrapolate, p.supernet))
