"""Several budgets at once: the binding one, a network within all of them, impossible combinations."""

from __future__ import annotations

import pytest

from slimnet.console.errors import SlimnetError
from slimnet.optimizers.budgets import Budget, Costs, check_budgets, extrapolate_within, show
from slimnet.optimizers.trajectory import CostRatio, TrajectoryPoint
from slimnet.optimizers.transfer import format_size
from slimnet.space.models import scaled_depth
from slimnet.space.spec import ArchSpec, uniform_spec

RESOLUTION, CLASSES, TOLERANCE = 64, 10, 0.01
FULL = uniform_spec("mobilenet_v2", 1.0, resolution=RESOLUTION, num_classes=CLASSES)
PROJECTED = uniform_spec("mobilenet_v2", 0.5, resolution=32, num_classes=CLASSES, depth=scaled_depth("mobilenet_v2", 0.5))


def point(step: int, channels: dict[str, int]) -> TrajectoryPoint:
    spec, base = PROJECTED.with_channels(channels), PROJECTED.cost()
    c = spec.cost()
    return TrajectoryPoint(
        step=step,
        slimmed=None,
        flops=c.flops,
        params=c.params,
        memory=c.memory,
        accuracy=0.0,
        loss=0.0,
        evaluations=0,
        ratio=CostRatio(flops=c.flops / base.flops, params=c.params / base.params),
        channels=channels,
    )


def late_then_early() -> list[TrajectoryPoint]:
    """A trajectory that first slims the late units (low resolution: params fall, FLOPs hardly),
    then the early ones (high resolution: FLOPs fall), so FLOPs and params bind at different points."""
    units = list(PROJECTED.channels)
    early, late = set(units[: len(units) // 2]), set(units[len(units) // 2 :])
    scales = [(1.5, w) for w in (1.5, 1.2, 0.9, 0.6, 0.4)] + [(w, 0.4) for w in (1.2, 0.9, 0.6, 0.4)]
    points = []
    assert early and late
    for step, (early_scale, late_scale) in enumerate(scales):
        channels = {u: max(2, round(c * (early_scale if u in early else late_scale))) for u, c in PROJECTED.channels.items()}
        points.append(point(step, channels))
    return points


TRAJECTORY = late_then_early()


def run(budgets: list[Budget]) -> dict:
    return extrapolate_within(
        TRAJECTORY,
        budgets,
        projected_uniform=PROJECTED,
        full_uniform=FULL,
        costs=Costs(None),
        stacking="average",
        divisor=8,
        tolerance=TOLERANCE,
    )


def cost_of(spec: ArchSpec, metric: str) -> float:
    return getattr(spec.cost(), metric)


def test_trajectory_separates_flops_from_params():
    # The test below means something only if the two metrics fall at different steps.
    first, turn = TRAJECTORY[0].ratio, TRAJECTORY[4].ratio
    assert turn.params / first.params < 0.15 and turn.flops / first.flops > 0.4


@pytest.mark.parametrize(
    "flops_fraction, params_fraction, binding",
    [(1.1, 0.22, "params"), (0.3, 0.5, "flops"), (1.5, 0.4, "params")],
)
def test_two_budgets_satisfy_both_and_match_the_binding_one(flops_fraction, params_fraction, binding):
    full = FULL.cost()
    budgets = [Budget("flops", int(flops_fraction * full.flops)), Budget("params", int(params_fraction * full.params))]
    result = run(budgets)
    optimized, uniform = result["optimized"], result["uniform"]
    assert result["binding"] == binding
    for budget in budgets:
        assert cost_of(optimized, budget.metric) <= budget.target * (1 + TOLERANCE), budget
    bound = next(b for b in budgets if b.metric == binding)
    assert abs(cost_of(optimized, binding) / bound.target - 1) <= TOLERANCE
    # The baseline is matched on the binding budget, not on the other one.
    assert abs(cost_of(uniform, binding) / cost_of(optimized, binding) - 1) <= TOLERANCE
    # With both budgets the network is the one the binding budget alone gives.
    alone = run([bound])
    assert alone["optimized"].channels == optimized.channels and alone["selected_step"] == result["selected_step"]


def test_memory_budget_with_flops():
    full = FULL.cost()
    budgets = [Budget("flops", int(0.8 * full.flops)), Budget("memory", int(0.35 * full.memory))]
    result = run(budgets)
    assert result["binding"] == "memory"
    memory = result["optimized"].cost().memory
    assert abs(memory / budgets[1].target - 1) <= TOLERANCE
    assert result["optimized"].cost().flops <= budgets[0].target
    assert abs(result["uniform"].cost().memory / memory - 1) <= TOLERANCE


def test_impossible_combination_names_the_budget_and_its_range():
    full = FULL.cost()
    with pytest.raises(SlimnetError) as error:
        run([Budget("flops", int(0.5 * full.flops)), Budget("params", int(0.01 * full.params))])
    message = str(error.value)
    low = min(p.ratio.params for p in TRAJECTORY) * full.params
    high = max(p.ratio.params for p in TRAJECTORY) * full.params
    assert message.startswith(f"search.params: {show('params', 0.01 * full.params)} is below what the search covered")
    assert f"choose between {show('params', low, 'up')} and {show('params', high, 'down')}" in message
    assert "\n" not in message


def test_loose_budget_above_the_trajectory_is_not_an_error_but_all_loose_is():
    full = FULL.cost()
    result = run([Budget("flops", 10 * full.flops), Budget("params", int(0.3 * full.params))])
    assert result["binding"] == "params"
    with pytest.raises(SlimnetError, match=r"search\.(flops|params): .* is above what the search covered: choose between"):
        run([Budget("flops", 10 * full.flops), Budget("params", 10 * full.params)])


def test_show_writes_budgets_as_params_yaml_does():
    assert show("latency", 5.24) == "5.24ms"
    assert show("latency", 0.05) == "50us"
    assert show("memory", 4_100_000) == "4.1MB"
    assert show("flops", 6_000_000) == "6M"


def test_a_latency_bound_is_rounded_towards_the_inside_of_the_range():
    from slimnet.config import parse_duration_ms

    # Rounding at 3 decimals and then printing 3 significant digits wrote 3.3401 "up" as 3.34ms and
    # 1234.5 "up" as 1.23e+03ms: lower bounds below what the search reached.
    assert show("latency", 3.3401, "up") == "3.35ms" and show("latency", 1234.5, "up") == "1240ms"
    assert show("latency", 3.3441, "up") == "3.35ms" and show("latency", 3.3441, "down") == "3.34ms"
    assert show("latency", 3.3449) == "3.34ms" and show("latency", 12.0, "up") == "12ms"
    assert show("latency", 0.0123456, "up") == "12.4us" and show("latency", 999.6, "up") == "1000ms"
    for ms in (0.0421, 0.0999, 0.1, 0.10049, 1.0, 3.3441, 9.995, 57.123, 123.45, 1234.5):
        assert parse_duration_ms(show("latency", ms, "up")) >= ms - 1e-12, ms
        assert parse_duration_ms(show("latency", ms, "down")) <= ms + 1e-12, ms


# --- one budget (what transfer.extrapolate's single-target tests checked, on the pipeline's path) ---


def trajectory_point(step: int, channels: dict[str, int], flops: int, params: int, ratio: CostRatio) -> TrajectoryPoint:
    return TrajectoryPoint(
        step=step,
        slimmed=None,
        flops=flops,
        params=params,
        memory=0,
        accuracy=0.0,
        loss=0.0,
        evaluations=0,
        ratio=ratio,
        channels=channels,
    )


RATIOS = [1.5, 1.2, 1.0, 0.8, 0.5]  # flops; params are half
FULL_COST = 10**6


def select(target_ratio: float, metric: str = "flops") -> int:
    ratios = {"flops": RATIOS, "params": [r / 2 for r in RATIOS]}
    return check_budgets([Budget(metric, target_ratio * FULL_COST)], ratios, {metric: FULL_COST})  # type: ignore[arg-type]


@pytest.mark.parametrize("target, step", [(1.5, 0), (1.3, 1), (1.2, 1), (1.1, 2), (0.6, 4), (0.5, 4)])
def test_one_budget_selects_the_first_point_within_it(target, step):
    assert select(target) == step


def test_one_budget_selects_by_params():
    assert select(0.45, "params") == 3


@pytest.mark.parametrize("target, side", [(1.6, "above"), (0.4, "below")])
def test_one_budget_out_of_range_names_the_range(target, side):
    with pytest.raises(SlimnetError, match=f"{side} what the search covered.*choose between 500K and 1.5M"):
        select(target)


def uniform_trajectory(projected: ArchSpec, width: float, widths: list[float]) -> list[TrajectoryPoint]:
    """A synthetic greedy trajectory: uniform networks around the projected one (at ``width``), widest first."""
    base = projected.cost()
    points = []
    for step, w in enumerate(widths):
        spec = uniform_spec(
            projected.arch,
            width * w,
            resolution=projected.resolution,
            num_classes=projected.num_classes,
            depth=projected.depth,
        )
        c = spec.cost()
        ratio = CostRatio(flops=c.flops / base.flops, params=c.params / base.params)
        points.append(trajectory_point(step, dict(spec.channels), c.flops, c.params, ratio))
    return points


WIDTHS = [1.5, 1.25, 1.0, 0.8, 0.6, 0.4]
MBV2_SOURCE = (1, 1, 2, 2, 2, 2, 1)


def relative_error(value: float, target: float) -> float:
    return abs(value - target) / target


def one_budget(points, budget: Budget, *, projected: ArchSpec, full: ArchSpec, stacking: str) -> dict:
    return extrapolate_within(
        points,
        [budget],
        projected_uniform=projected,
        full_uniform=full,
        costs=Costs(None),
        stacking=stacking,
        divisor=8,
        tolerance=TOLERANCE,
    )


def test_one_budget_without_projection_uses_selected_channels():
    full = uniform_spec("mobilenet_v2", 1.0, resolution=RESOLUTION, num_classes=CLASSES, depth=MBV2_SOURCE)
    points = uniform_trajectory(full, 1.0, WIDTHS)
    target = int(0.7 * full.cost().flops)
    result = one_budget(points, Budget("flops", target), projected=full, full=full, stacking="average")
    expected = next(p for p in points if p.flops <= target)
    assert result["selected_step"] == expected.step
    assert result["optimized"].channels == expected.channels
    assert result["multiplier"] == 1.0
    assert relative_error(result["uniform"].cost().flops, result["optimized"].cost().flops) <= TOLERANCE


@pytest.mark.parametrize("stacking", ["last", "average"])
def test_one_budget_with_projection_hits_target(stacking):
    full = uniform_spec("mobilenet_v2", 1.0, resolution=RESOLUTION, num_classes=CLASSES)
    projected = uniform_spec("mobilenet_v2", 0.5, resolution=32, num_classes=CLASSES, depth=scaled_depth("mobilenet_v2", 0.5))
    points = uniform_trajectory(projected, 0.5, WIDTHS)
    target = int(0.6 * full.cost().flops)
    result = one_budget(points, Budget("flops", target), projected=projected, full=full, stacking=stacking)
    optimized, uniform = result["optimized"], result["uniform"]
    assert optimized.depth == full.depth and optimized.resolution == full.resolution
    assert set(optimized.channels) == set(full.channels)
    assert relative_error(optimized.cost().flops, target) <= TOLERANCE
    assert relative_error(uniform.cost().flops, optimized.cost().flops) <= TOLERANCE
    assert uniform.depth == full.depth
    assert result["binding"] == "flops"
    assert points[result["selected_step"]].ratio.flops <= 0.6


def test_one_budget_on_params():
    full = uniform_spec("resnet18", 1.0, resolution=RESOLUTION, num_classes=CLASSES)
    projected = uniform_spec("resnet18", 0.5, resolution=32, num_classes=CLASSES, depth=(1, 1, 1, 1))
    points = uniform_trajectory(projected, 0.5, WIDTHS)
    target = int(0.5 * full.cost().params)
    result = one_budget(points, Budget("params", target), projected=projected, full=full, stacking="last")
    assert relative_error(result["optimized"].cost().params, target) <= TOLERANCE
    assert result["binding"] == "params"


@pytest.mark.parametrize("fraction, side", [(0.01, "below"), (5.0, "above")])
def test_one_budget_out_of_range_gives_absolute_range(fraction, side):
    full = uniform_spec("mobilenet_v2", 1.0, resolution=RESOLUTION, num_classes=CLASSES)
    projected = uniform_spec("mobilenet_v2", 0.5, resolution=32, num_classes=CLASSES, depth=scaled_depth("mobilenet_v2", 0.5))
    points = uniform_trajectory(projected, 0.5, WIDTHS)
    full_flops = full.cost().flops
    target = int(fraction * full_flops)
    with pytest.raises(SlimnetError) as error:
        one_budget(points, Budget("flops", target), projected=projected, full=full, stacking="average")
    message = str(error.value)
    low = format_size(points[-1].ratio.flops * full_flops, "up")
    high = format_size(points[0].ratio.flops * full_flops, "down")
    assert f"search.flops: {format_size(target)} is {side} what the search covered" in message
    assert f"choose between {low} and {high}" in message
    assert "\n" not in message
