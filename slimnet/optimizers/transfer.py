"""Width transfer (§3.2 of the width-transfer paper): cost matching and the uniform baseline.

The search runs on a projected problem (narrower, shallower, lower resolution). A point of
its greedy trajectory is read as per-unit width multipliers relative to the projected
uniform network, stacked to the full depth, and scaled by one global factor until the full
network costs the target. The uniform network at the same cost is the baseline. Which point
of the trajectory a set of budgets selects, and the whole extrapolation, is budgets.py's.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Literal

from slimnet.console.errors import SlimnetError
from slimnet.space.channels import Blueprint
from slimnet.space.flops import cost
from slimnet.space.models import build_blueprint
from slimnet.space.spec import ArchSpec, uniform_spec

Metric = Literal["flops", "params"]
# A cost of a configuration other than cost()'s fields (predicted latency): (blueprint, channels, resolution) -> value.
CostFn = Callable[[Blueprint, dict[str, int], int], float]
Stacking = Literal["last", "average"]

# Bracket for the global multiplier; far wider than any sensible rescaling.
K_LOW, K_HIGH = 1e-3, 1e3
RELAXED_DIVISORS = (4, 2, 1)


# --- numbers for messages ---------------------------------------------------------------

_SCALES = ((10**12, "T"), (10**9, "G"), (10**6, "M"), (10**3, "K"))


# A printed bound rounds towards the inside of its range: "up" for a lower bound, "down" for an upper.
ROUNDING = {"nearest": round, "up": math.ceil, "down": math.floor}


def format_size(n: float, rounding: Literal["nearest", "up", "down"] = "nearest") -> str:
    """12_345_678 -> "12.3M" (three significant digits, as config's sizes are written).

    ``rounding`` "up"/"down" keeps a printed bound inside a range, so a user who copies
    the lower bound of "choose between A and B" gets a reachable target.
    """
    value = ROUNDING[rounding](n)
    if value < 1000:
        return str(value)
    scale, suffix = next((s, x) for s, x in _SCALES if value >= s)
    decimals = max(0, 3 - len(str(value // scale)))
    quantum = scale // 10**decimals
    count = {"nearest": (value + quantum // 2) // quantum, "up": -(-value // quantum), "down": value // quantum}[rounding]
    if count * quantum >= 1000 * scale and suffix != "T":
        return format_size(count * quantum, rounding)  # 999.7K rounds to 1M, not "1000K"
    text = f"{count / 10**decimals:.{decimals}f}"
    if decimals:
        text = text.rstrip("0").rstrip(".")
    return text + suffix


# --- multipliers and depth stacking -------------------------------------------------------


def width_multipliers(spec: ArchSpec, reference: ArchSpec) -> dict[str, float]:
    """Each unit's width relative to the same unit of the reference (projected uniform) network."""
    if spec.arch != reference.arch or tuple(spec.depth) != tuple(reference.depth):
        raise SlimnetError(
            f"cannot compare a {spec.arch} at depth {list(spec.depth)} with a {reference.arch} "
            f"at depth {list(reference.depth)}: the trajectory and its reference must be the same network"
        )
    if set(spec.channels) != set(reference.channels):
        odd = sorted(set(spec.channels) ^ set(reference.channels))
        raise SlimnetError(f"channels and reference name different units ({', '.join(odd[:5])}): re-run the search stage")
    return {u: spec.channels[u] / reference.channels[u] for u in reference.channels}


def _block_units(blueprint: Blueprint) -> dict[str, tuple[int, int, str]]:
    """Units that belong to one repeated block: unit -> (stage, position in stage, suffix).

    A block's own units are named after it (``stage2.1.expand``, ``stage3.0.mid1``, or the
    block name itself for MobileNetV1's layers); stage-shared units and the stem do not
    carry a block's name, so they map by name.
    """
    owned: dict[str, tuple[int, int, str]] = {}
    for s, indices in enumerate(blueprint.stages):
        for b, index in enumerate(indices):
            name = blueprint.blocks[index].name
            for unit in blueprint.units:
                if unit == name or unit.startswith(name + "."):
                    owned[unit] = (s, b, unit[len(name) :])
    return owned


def _stage_value(values: list[float], position: int, strategy: Stacking) -> float:
    """The multiplier for block ``position`` of a stage whose source blocks have ``values``."""
    if position < len(values):
        return values[position]
    if strategy == "last" or len(values) == 1:
        return values[-1] if strategy == "last" else values[0]
    tail = values[1:]  # the first block changes resolution/width, so it is not typical of the stage
    if all(v == tail[0] for v in tail):
        return tail[0]  # exact, so both strategies agree on uniform multipliers
    return sum(tail) / len(tail)


def stack_depth(
    multipliers: dict[str, float],
    source_depth: Sequence[int],
    target_depth: Sequence[int],
    arch: str,
    strategy: Stacking,
) -> dict[str, float]:
    """Per-unit multipliers of a network with ``source_depth`` blocks per stage, for ``target_depth``.

    Target blocks that exist in the source keep their values (the source blocks are the
    first ones of each stage); extra blocks repeat the last source block ("last") or take
    the mean of source blocks 1..n-1 ("average"; block 0 when a stage has one block).
    """
    if strategy not in ("last", "average"):
        raise SlimnetError(f"extrapolate.stacking must be 'last' or 'average', got {strategy!r}")
    source = build_blueprint(arch, depth=source_depth)
    target = build_blueprint(arch, depth=target_depth)
    missing = [u for u in source.units if u not in multipliers]
    if missing:
        raise SlimnetError(f"multipliers lack unit(s) {', '.join(missing[:5])} of {arch} at depth {list(source_depth)}")
    source_blocks = [[source.blocks[i].name for i in stage] for stage in source.stages]
    owned = _block_units(target)
    stacked: dict[str, float] = {}
    for unit in target.units:
        if unit not in owned:
            if unit not in multipliers:
                raise SlimnetError(
                    f"unit {unit} of {arch} at depth {list(target_depth)} has no source at depth {list(source_depth)}"
                )
            stacked[unit] = multipliers[unit]
            continue
        s, b, suffix = owned[unit]
        values = [multipliers[name + suffix] for name in source_blocks[s]]
        stacked[unit] = _stage_value(values, b, strategy)
    return stacked


# --- matching a cost -----------------------------------------------------------------------


def _within(value: int, target: int, tolerance: float) -> bool:
    return abs(value / target - 1) <= tolerance


def _bracket(evaluate: Callable[[float], int], target: int, low: float, high: float) -> list[float]:
    """Geometric bisection of a nondecreasing step function; returns the arguments whose
    values are the nearest reachable ones at or below and above ``target``."""
    if evaluate(low) > target:
        return [low]
    if evaluate(high) <= target:
        return [high]
    while math.log(high / low) > 1e-12:
        middle = math.sqrt(low * high)
        if evaluate(middle) <= target:
            low = middle
        else:
            high = middle
    return [low, high]


def _closest(evaluate: Callable[[float], int], candidates: list[float], target: int) -> tuple[float, int]:
    scored = [(abs(evaluate(c) / target - 1), c) for c in candidates]
    best = min(scored)[1]
    return best, evaluate(best)


def scaled_channels(multipliers: dict[str, float], base_channels: dict[str, int], k: float, divisor: int) -> dict[str, int]:
    """channels[u] = k * multipliers[u] * base_channels[u], rounded to ``divisor`` (at least one)."""
    return {u: max(divisor, round(k * multipliers[u] * base / divisor) * divisor) for u, base in base_channels.items()}


def grid_steps(divisor: int) -> list[int]:
    """The channel grids a match may use, coarsest first: ``divisor``, then the finer 4, 2, 1."""
    return [divisor] + [d for d in RELAXED_DIVISORS if d < divisor]


def match_cost(
    arch_template: ArchSpec,
    multipliers: dict[str, float],
    base_channels: dict[str, int],
    target: int,
    metric: Metric = "flops",
    divisor: int = 8,
    tolerance: float = 0.01,
    measure: CostFn | None = None,
    steps: Sequence[int] | None = None,
) -> tuple[ArchSpec, float, int]:
    """Scale all units by one factor k so the network costs ``target`` (within ``tolerance``);
    returns the spec, k and the channel grid (divisor) it is on.

    Rounding makes cost a step function of k, so the nearest step on either side is taken;
    when no step of ``divisor`` lands close enough, finer divisors (4, 2, 1) are tried, or the
    grids of ``steps`` in their order when given (``[4]``: multiples of 4 or fail).
    ``measure`` replaces cost()'s ``metric`` field (``metric`` then only names it in messages).
    """
    if target <= 0:
        raise SlimnetError(f"target {metric} must be positive, got {target}")
    missing = [u for u in base_channels if u not in multipliers]
    if missing:
        raise SlimnetError(f"no width multiplier for unit(s) {', '.join(missing[:5])}")
    blueprint = arch_template.blueprint()
    unknown = set(base_channels) ^ set(blueprint.units)
    if unknown:
        raise SlimnetError(f"base channels do not match the units of {arch_template.arch}: {', '.join(sorted(unknown)[:5])}")
    closest: tuple[float, int] | None = None
    for step in grid_steps(divisor) if steps is None else steps:

        def evaluate(k: float, step: int = step) -> float:
            channels = scaled_channels(multipliers, base_channels, k, step)
            return _cost_of(blueprint, channels, arch_template.resolution, metric, measure)

        k, reached = _closest(evaluate, _bracket(evaluate, target, K_LOW, K_HIGH), target)
        if _within(reached, target, tolerance):
            channels = scaled_channels(multipliers, base_channels, k, step)
            return arch_template.with_channels(channels, note=f"width transfer, k={k:.4g}, divisor {step}"), k, step
        if closest is None or abs(reached / target - 1) < abs(closest[1] / target - 1):
            closest = (k, reached)
    show = (lambda v: f"{v:.4g}") if measure is not None else format_size
    if closest is None:
        raise SlimnetError("no channel grid to match on: steps is empty")
    raise SlimnetError(
        f"cannot bring {arch_template.arch} to {metric}={show(target)} within {tolerance:.1%}: "
        f"the closest reachable is {show(closest[1])}; choose a target nearer that or raise the tolerance"
    )


def _cost_of(blueprint: Blueprint, channels: dict[str, int], resolution: int, metric: str, measure: CostFn | None) -> float:
    if measure is not None:
        return measure(blueprint, channels, resolution)
    return getattr(cost(blueprint, channels, resolution), metric)


def uniform_baseline(
    arch: str,
    target: int,
    *,
    resolution: int,
    num_classes: int,
    in_channels: int = 3,
    cifar: bool = False,
    depth: Sequence[int] | None = None,
    divisor: int = 8,
    metric: Metric = "flops",
    tolerance: float = 0.01,
    measure: CostFn | None = None,
    steps: Sequence[int] | None = None,
) -> tuple[ArchSpec, float, int]:
    """The default network under one width multiplier, costing ``target``; returns (spec, width,
    the channel grid it is on).

    ``measure`` replaces cost()'s ``metric`` field and ``steps`` the grids tried, as in :func:`match_cost`."""

    def spec_at(width: float, step: int = divisor) -> ArchSpec:
        return uniform_spec(
            arch,
            width,
            resolution=resolution,
            num_classes=num_classes,
            in_channels=in_channels,
            cifar=cifar,
            depth=None if depth is None else tuple(depth),
            divisor=step,
        )

    reference = spec_at(1.0)
    units = set(reference.channels)
    blueprint = reference.blueprint()

    # The architecture's own width multiplier (e.g. MobileNetV2 keeps its 1280-channel last conv
    # below 1.0x); a finer channel divisor only where the coarse one cannot land within tolerance.
    grids = grid_steps(divisor) if steps is None else list(steps)
    for step in grids:

        def evaluate(width: float, step: int = step) -> float:
            channels = spec_at(width, step).channels
            if set(channels) != units:
                # Very narrow ResNets couple units the full one keeps apart; treat as "too small".
                return -1
            return _cost_of(blueprint, channels, resolution, metric, measure)

        # Halve from 1.0 until the cost is below the target, but not past the narrowest width
        # whose units still match the full network's.
        low = 1.0
        while low > K_LOW and evaluate(low) > target and evaluate(low / 2) >= 0:
            low /= 2
        width, reached = _closest(evaluate, _bracket(evaluate, target, low, K_HIGH), target)
        if _within(reached, target, tolerance):
            spec = spec_at(width, step)
            return spec.model_copy(update={"note": f"uniform {width:.4g}x"}), width, step
    # Last resort: per-unit rounding of the width-1.0 channels.
    ones = {u: 1.0 for u in reference.channels}
    spec, k, step = match_cost(reference, ones, dict(reference.channels), target, metric, divisor, tolerance, measure, grids)
    return spec.model_copy(update={"note": f"uniform {k:.4g}x (per-unit rounding)"}), k, step


# --- shared with budgets.py ------------------------------------------------------------


class OutOfRange(SlimnetError):
    """A target outside what the search covered; the message gives the range that is possible."""


class AboveRange(OutOfRange):
    """Every budget above the largest network the search covered: ``metric`` and ``target`` name the loosest."""

    def __init__(self, message: str, metric: str, target: float):
        super().__init__(message)
        self.metric, self.target = metric, target


def _same_network(a: ArchSpec, b: ArchSpec) -> bool:
    return tuple(a.depth) == tuple(b.depth) and a.resolution == b.resolution and a.channels == b.channels


def channels_per_layer(spec: ArchSpec) -> list[dict]:
    """Output channels of every convolution in order (AutoSlim Fig. 5's per-layer plot)."""
    rows = []
    for block in spec.blueprint().blocks:
        for conv in block.convs:
            rows.append({"layer": len(rows), "name": conv.name, "channels": spec.channels[conv.out_unit]})
    return rows
