"""Several budgets at once (FLOPs, params, predicted latency, memory): which one binds, and the
network that satisfies all of them.

Each budget picks its own trajectory point (the first whose cost ratio to the uniform 1.0x
network is at most the target's); the tightest budget picks the latest point (the first one
within every budget at once, where a cost does not fall strictly along the trajectory). That point's
widths are carried to the full network and scaled by the largest global factor k that keeps
every budget: the budget that stops k first is the binding one, and the network is matched to
it within ``tolerance`` exactly as a single target is. The uniform baseline and the random
draws are matched on the binding budget, all on one channel grid. A budget below what the trajectory reaches is impossible and fails before any
matching, naming the budget and the range it could take; a budget above the trajectory's
largest point is simply loose, unless every budget is.

Cost ratios of a trajectory point: FLOPs and params as the search recorded them (on the
projected network), memory from the same cost model, latency predicted on the full network
(the point's widths stacked to the full depth at k = 1, over the full uniform network), since
the latency table is measured for the full network at its own resolution.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, TypeVar

from slimnet.console.errors import SlimnetError
from slimnet.deploy.latency_model import LatencyTable, predict_ms
from slimnet.optimizers.baselines import draw_configuration
from slimnet.optimizers.trajectory import TrajectoryPoint
from slimnet.optimizers.transfer import (
    K_HIGH,
    K_LOW,
    ROUNDING,
    AboveRange,
    CostFn,
    OutOfRange,
    _same_network,
    format_size,
    grid_steps,
    match_cost,
    scaled_channels,
    stack_depth,
    uniform_baseline,
    width_multipliers,
)
from slimnet.space.channels import Blueprint, ChannelSpace
from slimnet.space.flops import cost
from slimnet.space.spec import ArchSpec

BudgetMetric = Literal["flops", "params", "latency", "memory"]
METRICS: tuple[BudgetMetric, ...] = ("flops", "params", "latency", "memory")
T = TypeVar("T")


@dataclass(frozen=True)
class Budget:
    metric: BudgetMetric
    target: float  # FLOPs, params, ms or bytes


def requested(targets: object) -> list[Budget]:
    """The budgets a search section sets (its flops, params, latency, memory that are not None)."""
    return [Budget(metric, getattr(targets, metric)) for metric in METRICS if getattr(targets, metric) is not None]


def show(metric: str, value: float, rounding: Literal["nearest", "up", "down"] = "nearest") -> str:
    """A budget's value as params.yaml writes it: 6M, 300K, 5.2ms, 4.1MB."""
    if metric == "latency":
        return _duration(value, rounding)
    text = format_size(value, rounding)
    return text + "B" if metric == "memory" else text


def _duration(ms: float, rounding: Literal["nearest", "up", "down"]) -> str:
    """Three significant digits, rounded in ``rounding``'s direction at the digit printed (so a
    printed lower bound is never below the true one): 3.3441 up -> 3.35ms, down -> 3.34ms."""
    unit, value = ("ms", ms) if ms >= 0.1 else ("us", ms * 1000)
    if value <= 0:
        return f"0{unit}"
    exponent = math.floor(math.log10(value)) - 2
    # round(.., 9): 5.24 / 0.01 is 523.99999..., which must count as 524 whatever the direction.
    count = ROUNDING[rounding](round(value / 10.0**exponent, 9))
    text = f"{count * 10.0**exponent:.{max(0, -exponent)}f}"
    return (text.rstrip("0").rstrip(".") if "." in text else text) + unit


class Costs:
    """Every budget's cost function for one network family (latency needs the table)."""

    def __init__(self, table: LatencyTable | None):
        self.table = table

    def function(self, metric: BudgetMetric) -> CostFn | None:
        """None: a field of flops.cost; else a callable (latency)."""
        if metric != "latency":
            return None
        if self.table is None:
            raise SlimnetError("search.latency needs the latency table: run `dvc repro latency`")
        table = self.table
        return lambda blueprint, channels, resolution: predict_ms(table, blueprint, channels, resolution)

    def of(self, metric: BudgetMetric, blueprint: Blueprint, channels: dict[str, int], resolution: int) -> float:
        function = self.function(metric)
        if function is not None:
            return function(blueprint, channels, resolution)
        return getattr(cost(blueprint, channels, resolution), metric)

    def of_spec(self, metric: BudgetMetric, spec: ArchSpec) -> float:
        return self.of(metric, spec.blueprint(), spec.channels, spec.resolution)


def carried_widths(channels: Mapping[str, T], projected: ArchSpec, full: ArchSpec, stacking: str) -> dict[str, T]:
    """Widths of the projected network carried to the full one at k = 1, unrounded: each unit's
    multiplier over the projected uniform network, stacked to the full depth, times the full
    network's channels. Tensors pass through (DMCP's expected widths stay differentiable)."""
    if _same_network(projected, full):
        return dict(channels)
    multipliers = {u: channels[u] / projected.channels[u] for u in projected.channels}
    stacked = stack_depth(multipliers, projected.depth, full.depth, full.arch, stacking)  # type: ignore[arg-type]
    return {u: m * full.channels[u] for u, m in stacked.items()}


def _full_channels(point: TrajectoryPoint, projected: ArchSpec, full: ArchSpec, stacking: str, divisor: int) -> dict[str, int]:
    """The point's widths on the full network at k = 1 (as they are without projection)."""
    if _same_network(projected, full):
        return dict(point.channels)
    multipliers = width_multipliers(projected.with_channels(point.channels), projected)
    stacked = stack_depth(multipliers, projected.depth, full.depth, full.arch, stacking)  # type: ignore[arg-type]
    return scaled_channels(stacked, dict(full.channels), 1.0, divisor)


def point_ratios(
    trajectory: Sequence[TrajectoryPoint],
    metric: BudgetMetric,
    *,
    projected: ArchSpec,
    full: ArchSpec,
    costs: Costs,
    stacking: str,
    divisor: int,
) -> list[float]:
    """Each trajectory point's cost ratio to the uniform 1.0x network, for ``metric``."""
    if metric in ("flops", "params"):
        return [getattr(p.ratio, metric) for p in trajectory]
    if metric == "memory":  # from the channels: the cost model's own figure, whatever the search recorded
        blueprint, reference = projected.blueprint(), projected.cost().memory
        return [costs.of(metric, blueprint, p.channels, projected.resolution) / reference for p in trajectory]
    blueprint, reference = full.blueprint(), costs.of_spec(metric, full)
    return [
        costs.of(metric, blueprint, _full_channels(p, projected, full, stacking, divisor), full.resolution) / reference
        for p in trajectory
    ]


def check_budgets(budgets: Sequence[Budget], ratios: dict[str, list[float]], full_costs: dict[str, float]) -> int:
    """The index of the trajectory point the budgets select; OutOfRange for an impossible combination."""
    if not budgets:
        raise SlimnetError("set a target: search.flops, search.params, search.latency or search.memory")
    chosen: dict[str, int] = {}
    for budget in budgets:
        values, full_cost = ratios[budget.metric], full_costs[budget.metric]
        low, high = min(values), max(values)
        ratio = budget.target / full_cost
        if ratio < low:
            raise OutOfRange(
                f"search.{budget.metric}: {show(budget.metric, budget.target)} is below what the search covered, "
                f"whatever the other budgets: choose between {show(budget.metric, low * full_cost, 'up')} "
                f"and {show(budget.metric, high * full_cost, 'down')}"
            )
        chosen[budget.metric] = next(i for i, v in enumerate(values) if v <= ratio) if ratio <= high else -1
    if all(index < 0 for index in chosen.values()):
        # Every budget is above the largest point: the least loose one names the range.
        loosest = min(budgets, key=lambda b: b.target / (full_costs[b.metric] * max(ratios[b.metric])))
        values, full_cost = ratios[loosest.metric], full_costs[loosest.metric]
        raise AboveRange(
            f"search.{loosest.metric}: {show(loosest.metric, loosest.target)} is above what the search covered: "
            f"choose between {show(loosest.metric, min(values) * full_cost, 'up')} "
            f"and {show(loosest.metric, max(values) * full_cost, 'down')}",
            loosest.metric,
            loosest.target,
        )
    # The first point within every budget at once. With costs that fall along the trajectory
    # this is the latest of the budgets' own points; predicted latency need not fall strictly
    # (the table is a measurement), so every budget is checked at the point itself.
    start = max(chosen.values())
    limits = {b.metric: b.target / full_costs[b.metric] for b in budgets}
    for index in range(start, len(next(iter(ratios.values())))):
        if all(ratios[metric][index] <= limit for metric, limit in limits.items()):
            return index
    raise OutOfRange(
        "no point of the search is within "
        + " and ".join(f"search.{b.metric} {show(b.metric, b.target)}" for b in budgets)
        + " at once: relax one of them"
    )


def nearest_stacked_index(
    trajectory: Sequence[TrajectoryPoint],
    budgets: Sequence[Budget],
    *,
    projected: ArchSpec,
    full: ArchSpec,
    costs: Costs,
    stacking: str,
    divisor: int,
) -> int:
    """The point whose pattern, stacked to the full network at k = 1, comes nearest the binding budget.

    With depth and resolution projected, layers weigh differently in the full network, so the
    point at the target's cost ratio may need a large k (on the default its pattern costs ~80% of
    the target before widening); this one needs the least rescaling of what the search chose.
    """
    blueprint = full.blueprint()

    def distance(point: TrajectoryPoint) -> float:
        channels = _full_channels(point, projected, full, stacking, divisor)
        tightest = max(costs.of(b.metric, blueprint, channels, full.resolution) / b.target for b in budgets)
        return abs(tightest - 1)

    return min(range(len(trajectory)), key=lambda index: distance(trajectory[index]))


def _largest_k(
    costs: Costs,
    metric: BudgetMetric,
    blueprint: Blueprint,
    multipliers: dict,
    base: dict,
    resolution: int,
    target: float,
    divisor: int,
) -> float:
    """The largest global factor k whose network still costs at most ``target`` (geometric bisection)."""
    low, high = K_LOW, K_HIGH

    def value(k: float) -> float:
        return costs.of(metric, blueprint, scaled_channels(multipliers, base, k, divisor), resolution)

    if value(low) > target:
        return low
    while math.log(high / low) > 1e-9:
        middle = math.sqrt(low * high)
        low, high = (middle, high) if value(middle) <= target else (low, middle)
    return low


def selected_index(
    trajectory: Sequence[TrajectoryPoint],
    budgets: Sequence[Budget],
    *,
    projected_uniform: ArchSpec,
    full_uniform: ArchSpec,
    costs: Costs,
    stacking: str,
    divisor: int,
    point_rule: Literal["ratio", "stacked", "last"] = "ratio",
) -> int:
    """Index of the trajectory point the budgets select (see :func:`extrapolate_within`); an
    impossible budget fails naming itself and the range the trajectory covers."""
    if not trajectory:
        raise SlimnetError("the search trajectory is empty: re-run the search stage")
    if point_rule == "last":  # an optimizer that searched for these budgets (DMCP) decided its point
        return len(trajectory) - 1
    common = dict(projected=projected_uniform, full=full_uniform, costs=costs, stacking=stacking, divisor=divisor)
    ratios = {b.metric: point_ratios(trajectory, b.metric, **common) for b in budgets}
    full_costs = {b.metric: costs.of_spec(b.metric, full_uniform) for b in budgets}
    index = check_budgets(budgets, ratios, full_costs)  # also the range check for "stacked"
    if point_rule == "stacked" and not _same_network(projected_uniform, full_uniform):
        index = nearest_stacked_index(trajectory, budgets, **common)
    return index


def extrapolate_within(
    trajectory: Sequence[TrajectoryPoint],
    budgets: Sequence[Budget],
    *,
    projected_uniform: ArchSpec,
    full_uniform: ArchSpec,
    costs: Costs,
    stacking: str,
    divisor: int,
    tolerance: float,
    point_rule: Literal["ratio", "stacked", "last"] = "ratio",
    space: ChannelSpace | None = None,
    random_draws: Sequence[int] = (),
    optimizer: str = "AutoSlim",
) -> dict:
    """The network for several budgets at once, the binding budget, the uniform baseline on it,
    and one random network per seed of ``random_draws`` (configurations of the supernet's ``space``).
    ``optimizer`` names the trajectory's optimizer in the optimized network's note.

    ``point_rule`` "ratio" takes the first point within every budget's cost ratio; "stacked" the
    point whose stacked full network at k = 1 comes nearest the budgets (the same without projection);
    "last" the trajectory's last point, matched to the budgets even without projection (DMCP's
    decided widths, whose cost is the target's only in expectation).

    Each draw is scaled onto the space's choices to the selected point's projected FLOPs, then
    carried over like the point (multipliers, stacking, one factor k) and matched, as the uniform
    network is, to the optimized network's cost of the binding budget. Every matched network is on
    one channel grid, the coarsest of ``divisor``, 4, 2, 1 on which each of them lands within
    ``tolerance`` (``divisor`` and ``divisor_fallback`` in the result say which one it was).
    """
    if random_draws and space is None:
        raise SlimnetError("random draws need the supernet's channel space")
    index = selected_index(
        trajectory,
        budgets,
        projected_uniform=projected_uniform,
        full_uniform=full_uniform,
        costs=costs,
        stacking=stacking,
        divisor=divisor,
        point_rule=point_rule,
    )
    same = _same_network(projected_uniform, full_uniform) and point_rule != "last"
    point = trajectory[index]
    base, blueprint = dict(full_uniform.channels), full_uniform.blueprint()

    def carried(channels: dict[str, int]) -> dict[str, float]:
        multipliers = width_multipliers(projected_uniform.with_channels(channels), projected_uniform)
        return stack_depth(multipliers, projected_uniform.depth, full_uniform.depth, full_uniform.arch, stacking)  # type: ignore[arg-type]

    # (scaled, drawn) per seed: the scaled configuration is the one carried over.
    sampled = {
        seed: draw_configuration(space, seed, flops=point.flops, resolution=projected_uniform.resolution)  # type: ignore[arg-type]
        for seed in random_draws
    }
    draws = {seed: carried(scaled) for seed, (scaled, _) in sampled.items()}
    if same:
        # Without projection the point is used as it is: the budget it comes closest to binds.
        as_is = full_uniform.with_channels(point.channels)
        binding = max(budgets, key=lambda b: costs.of_spec(b.metric, as_is) / b.target)
    else:
        stacked = carried(point.channels)
        limits = {
            b.metric: _largest_k(costs, b.metric, blueprint, stacked, base, full_uniform.resolution, b.target, divisor)
            for b in budgets
        }
        binding = min(budgets, key=lambda b: limits[b.metric])
    measure = costs.function(binding.metric)
    target = int(round(binding.target)) if binding.metric != "latency" else binding.target

    def named(name: str, match, *args, **kwargs):
        try:
            return match(*args, **kwargs)
        except SlimnetError as error:
            raise SlimnetError(f"the {name} network: {error}") from None

    def match_all(step: int) -> tuple:
        """Every network on channels in multiples of ``step`` (SlimnetError where one cannot land)."""
        optimized, k = full_uniform.with_channels(point.channels, note=f"{optimizer} step {point.step}"), 1.0
        if not same:
            optimized, k, _ = named(
                "optimized", match_cost, full_uniform, stacked, base, target, binding.metric, divisor, tolerance, measure, [step]
            )
            note = f"{optimizer} step {point.step}, width transfer k={k:.4g} ({stacking}), bound by {binding.metric}"
            optimized = optimized.model_copy(update={"note": note})
        # The baselines cost what the optimized network does, so the comparison is like for like.
        reached = costs.of_spec(binding.metric, optimized)
        uniform, width, _ = named(
            "uniform",
            uniform_baseline,
            full_uniform.arch,
            reached,
            resolution=full_uniform.resolution,
            num_classes=full_uniform.num_classes,
            in_channels=full_uniform.in_channels,
            cifar=full_uniform.cifar,
            depth=full_uniform.depth,
            divisor=divisor,
            metric=binding.metric,
            tolerance=tolerance,
            measure=measure,
            steps=[step],
        )
        randoms = {}
        for seed, multipliers in draws.items():
            spec, factor, _ = named(
                f"random (draw {seed})",
                match_cost,
                full_uniform,
                multipliers,
                base,
                reached,
                binding.metric,
                divisor,
                tolerance,
                measure,
                [step],
            )
            note = f"random draw (seed {seed}), width transfer k={factor:.4g} ({stacking})"
            randoms[seed] = spec.model_copy(update={"note": note})
        return optimized, k, uniform, width, randoms

    # One channel grid for every network: the coarsest on which each of them lands within tolerance
    # (a network matched on a finer grid than the others could spend its FLOPs in finer steps).
    failures = []
    for finest in grid_steps(divisor):
        try:
            optimized, k, uniform, width, randoms = match_all(finest)
            break
        except SlimnetError as error:
            failures.append(error)
    else:
        raise SlimnetError(
            f"no channel grid (multiples of {divisor} down to 1) fits every network; on the finest, {failures[-1]}"
        )
    grid = f", channels in multiples of {finest}" + (
        ""
        if finest == divisor
        else f" (a finer grid than model.divisor {divisor}: not every network lands within tolerance on it)"
    )
    if not same:
        optimized = optimized.model_copy(update={"note": optimized.note + grid})
    uniform = uniform.model_copy(update={"note": uniform.note + grid})
    randoms = {seed: spec.model_copy(update={"note": spec.note + grid}) for seed, spec in randoms.items()}
    for budget in budgets:
        reached = costs.of_spec(budget.metric, optimized)
        if reached > budget.target * (1 + tolerance):
            raise SlimnetError(
                f"search.{budget.metric}: the network matched to search.{binding.metric} costs {show(budget.metric, reached)}, "
                f"over the {show(budget.metric, budget.target)} budget by more than extrapolate.tolerance ({tolerance:.1%}); "
                f"lower search.{binding.metric} or raise the tolerance"
            )
    return {
        "optimized": optimized,
        "uniform": uniform,
        "random": randoms,
        "random_projected": {seed: scaled for seed, (scaled, _) in sampled.items()},
        "random_drawn": {seed: drawn for seed, (_, drawn) in sampled.items()},
        "selected_step": point.step,
        "multiplier": k,
        "uniform_width": width,
        "binding": binding.metric,
        "divisor": finest,
        "divisor_fallback": finest != divisor,
    }
