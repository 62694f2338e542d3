"""The baselines beside the searched network, and the choice of trajectory point."""

from __future__ import annotations

import math

import pytest

from slimnet.console.errors import SlimnetError
from slimnet.optimizers.baselines import draw_configuration, projected_uniform
from slimnet.optimizers.budgets import Budget, Costs, extrapolate_within
from slimnet.optimizers.transfer import match_cost, stack_depth, width_multipliers
from slimnet.space.flops import cost
from slimnet.space.models import scaled_depth
from slimnet.space.spec import uniform_spec
from slimnet.training.sandwich import build_space

FULL = uniform_spec("mobilenet_v2", 0.35, resolution=28, num_classes=10, in_channels=1, cifar=True)
PROJECTED = uniform_spec(
    "mobilenet_v2",
    0.245,
    resolution=16,
    num_classes=10,
    in_channels=1,
    cifar=True,
    depth=scaled_depth("mobilenet_v2", 0.5),
    divisor=2,
)
SPACE = build_space(PROJECTED, min_width=0.15, max_width=1.5, groups=10, divisor=2)


def projected_flops(config: dict[str, int]) -> int:
    return cost(SPACE.blueprint, config, PROJECTED.resolution).flops


@pytest.mark.parametrize("share", [0.3, 0.5, 0.7])
def test_a_draw_is_scaled_onto_the_choices_to_the_searched_points_projected_cost(share):
    flops = int(share * PROJECTED.cost().flops)
    for seed in range(5):
        scaled, drawn = draw_configuration(SPACE, seed, flops=flops, resolution=PROJECTED.resolution)
        assert SPACE.problems(scaled) is None and SPACE.problems(drawn) is None  # configurations the supernet runs
        # Nearer the target than the raw draw, and near it: one factor, each unit at its nearest choice.
        assert abs(projected_flops(scaled) / flops - 1) <= min(0.05, abs(projected_flops(drawn) / flops - 1))
        # The draw's shape is kept: units wider than others in the draw are not narrower after scaling.
        for a in drawn:
            for b in drawn:
                if drawn[a] / PROJECTED.channels[a] > drawn[b] / PROJECTED.channels[b] * 1.5:
                    assert scaled[a] / PROJECTED.channels[a] >= scaled[b] / PROJECTED.channels[b] * 0.75, (a, b)
        assert draw_configuration(SPACE, seed, flops=flops, resolution=PROJECTED.resolution) == (scaled, drawn)  # seeded
    # A draw is not a uniform network (that would make it the uniform baseline again).
    _, drawn = draw_configuration(SPACE, 0, flops=flops, resolution=PROJECTED.resolution)
    assert len({round(r, 2) for r in width_multipliers(PROJECTED.with_channels(drawn), PROJECTED).values()}) > 5


def test_the_uniform_network_as_a_supernet_configuration():
    # The supernet scores the uniform baseline at the share of the full network it keeps: a
    # 0.1625x MobileNetV2 is 0.46 of the 0.35x default, so ~0.46 of the projected channels, not
    # 0.1625 of them (that was the space's minimum, and the uniform estimate was the min's).
    for width in (0.1625, 0.25, 0.35, 0.5):
        uniform = uniform_spec("mobilenet_v2", width, resolution=28, num_classes=10, in_channels=1, cifar=True)
        config = projected_uniform(SPACE, PROJECTED, uniform, FULL)
        assert SPACE.problems(config) is None
        for unit, channels in config.items():
            wanted = uniform.channels[unit] / FULL.channels[unit] * PROJECTED.channels[unit]
            assert all(abs(channels - wanted) <= abs(c - wanted) for c in SPACE.choices[unit])
        projected_ratio = cost(SPACE.blueprint, config, PROJECTED.resolution).flops / PROJECTED.cost().flops
        full_ratio = uniform.cost().flops / FULL.cost().flops
        assert abs(projected_ratio / full_ratio - 1) < 0.25, (width, projected_ratio, full_ratio)
    small = uniform_spec("mobilenet_v2", 0.1625, resolution=28, num_classes=10, in_channels=1, cifar=True)
    assert projected_uniform(SPACE, PROJECTED, small, FULL) != SPACE.minimum
    same = projected_uniform(SPACE, PROJECTED, FULL, FULL)
    assert all(abs(same[u] - PROJECTED.channels[u]) <= SPACE.choices[u][1] - SPACE.choices[u][0] for u in same)


def slimming_trajectory(projected, units, steps: int):
    """A trajectory that slims only ``units`` (5% per step): their stages are deeper in the full
    network than in the projection, so each step saves a larger share of the full network."""
    from slimnet.optimizers.trajectory import CostRatio
    from tests.test_budgets import trajectory_point

    base = projected.cost()
    points = []
    for step in range(steps):
        channels = {u: max(2, round(c * (1 - 0.05 * step))) if u in units else c for u, c in projected.channels.items()}
        c = projected.with_channels(channels).cost()
        points.append(
            trajectory_point(
                step, channels, c.flops, c.params, CostRatio(flops=c.flops / base.flops, params=c.params / base.params)
            )
        )
    return points


def test_the_stacked_point_needs_the_least_rescaling():
    full = uniform_spec("mobilenet_v2", 1.0, resolution=64, num_classes=10)
    projected = uniform_spec("mobilenet_v2", 1.0, resolution=32, num_classes=10, depth=scaled_depth("mobilenet_v2", 0.5))
    deep = [u for u in projected.channels if u.startswith(("stage3", "stage4", "stage5"))]
    points = slimming_trajectory(projected, deep, 16)
    target = int(0.75 * full.cost().flops)

    def run(rule):
        return extrapolate_within(
            points,
            [Budget("flops", target)],
            projected_uniform=projected,
            full_uniform=full,
            costs=Costs(None),
            stacking="average",
            divisor=8,
            tolerance=0.01,
            point_rule=rule,
        )

    ratio, stacked = run("ratio"), run("stacked")
    for result in (ratio, stacked):
        assert abs(result["optimized"].cost().flops / target - 1) <= 0.01
    # The ratio point's pattern lands far from the target in the full network and is rescaled a lot;
    # the stacked rule picks a later-or-earlier point whose pattern needs k near 1.
    assert stacked["selected_step"] != ratio["selected_step"]
    assert abs(math.log(stacked["multiplier"])) < abs(math.log(ratio["multiplier"]))
    assert stacked["multiplier"] == pytest.approx(1.0, abs=0.04), (stacked["multiplier"], ratio["multiplier"])


def draws_at(target: int, tolerance: float = 0.01, draws=(0, 1, 2, 3, 4)) -> dict:
    points = slimming_trajectory(PROJECTED, list(PROJECTED.channels), 12)
    return extrapolate_within(
        points,
        [Budget("flops", target)],
        projected_uniform=PROJECTED,
        full_uniform=FULL,
        costs=Costs(None),
        stacking="average",
        divisor=8,
        tolerance=tolerance,
        space=SPACE,
        random_draws=list(draws),
    ), points


def networks_of(result: dict) -> dict:
    return {
        "optimized": result["optimized"],
        "uniform": result["uniform"],
        **{f"random-{s}": n for s, n in result["random"].items()},
    }


def test_random_draws_are_carried_over_and_matched_like_the_searched_network():
    result, points = draws_at(8_000_000)
    optimized = result["optimized"]
    target = optimized.cost().flops
    assert abs(target / 8e6 - 1) <= 0.01
    draws = result["random"]
    assert sorted(draws) == [0, 1, 2, 3, 4]
    for name, spec in networks_of(result).items():
        assert abs(spec.cost().flops / target - 1) <= 0.01, name  # each within tolerance of the searched network
        assert spec.depth == FULL.depth and set(spec.channels) == set(FULL.channels) and spec.resolution == FULL.resolution
    channels = [tuple(sorted(spec.channels.items())) for spec in draws.values()]
    assert len(set(channels)) == len(channels)  # the draws differ from each other
    # Each draw's projected configuration is scaled to the selected point's projected FLOPs.
    point = next(p for p in points if p.step == result["selected_step"])
    for seed, config in result["random_projected"].items():
        assert SPACE.problems(config) is None
        assert abs(projected_flops(config) / point.flops - 1) <= abs(
            projected_flops(result["random_drawn"][seed]) / point.flops - 1
        )
        assert abs(projected_flops(config) / point.flops - 1) <= 0.05
    # Seeded: the same draws again, and a seed's network does not depend on the other seeds.
    again, _ = draws_at(8_000_000, draws=(3, 1))
    assert again["random"] == {3: draws[3], 1: draws[1]}


def first_target(condition, divisor: int) -> tuple[int, dict]:
    """The first target of a 0.05M scan over the synthetic trajectory's range where
    ``condition(target, points)`` holds and every network is matched on multiples of ``divisor``,
    and its result."""
    points = slimming_trajectory(PROJECTED, list(PROJECTED.channels), 12)
    low = math.ceil(points[-1].ratio.flops * FULL.cost().flops / 50_000) * 50_000
    for target in range(low, FULL.cost().flops, 50_000):
        if condition(target, points):
            try:
                result = draws_at(target)[0]
            except SlimnetError:
                continue  # no common grid at this target (a coarse synthetic trajectory): the next one
            if result["divisor"] == divisor:
                return target, result
    raise AssertionError("no such target in the scan")


def optimized_on(target: int, points, steps: list[int]) -> bool:
    """Whether the network the target selects lands within 1% of it on channels in multiples of ``steps``."""
    ratio = target / FULL.cost().flops
    point = next(p for p in points if p.ratio.flops <= ratio)
    multipliers = stack_depth(
        width_multipliers(PROJECTED.with_channels(point.channels), PROJECTED),
        PROJECTED.depth,
        FULL.depth,
        "mobilenet_v2",
        "average",
    )
    try:
        match_cost(FULL, multipliers, dict(FULL.channels), target, "flops", 8, 0.01, None, steps)
    except SlimnetError:
        return False
    return True


def test_a_target_only_reachable_in_multiples_of_4_puts_every_network_on_that_grid():
    # The searched network alone lands within tolerance on multiples of 4 and not of 8.
    target, result = first_target(lambda t, points: not optimized_on(t, points, [8]) and optimized_on(t, points, [4]), 4)
    assert result["divisor_fallback"] is True
    step = result["divisor"]
    optimized = result["optimized"]
    assert abs(optimized.cost().flops / target - 1) <= 0.01
    for name, spec in networks_of(result).items():
        assert all(c % step == 0 for c in spec.channels.values()), name  # the same grid for every network
        assert abs(spec.cost().flops / optimized.cost().flops - 1) <= 0.01, name
        assert f"channels in multiples of {step} (a finer grid than model.divisor 8" in spec.note, (name, spec.note)
    # Matched alone, a draw would have kept multiples of 8: the shared grid moved it too.
    alone_on_8 = []
    for config in result["random_projected"].values():
        multipliers = stack_depth(
            width_multipliers(PROJECTED.with_channels(config), PROJECTED), PROJECTED.depth, FULL.depth, "mobilenet_v2", "average"
        )
        try:
            match_cost(FULL, multipliers, dict(FULL.channels), optimized.cost().flops, "flops", 8, 0.01, None, [8])
            alone_on_8.append(config)
        except SlimnetError:
            pass
    assert alone_on_8, "no draw lands on multiples of 8 alone: the test shows nothing"


def test_every_network_keeps_the_divisor_where_all_of_them_land_on_it():
    _, result = first_target(lambda t, points: True, 8)
    assert result["divisor_fallback"] is False
    for name, spec in networks_of(result).items():
        assert all(c % 8 == 0 for c in spec.channels.values()), name
        assert spec.note.endswith("channels in multiples of 8"), (name, spec.note)


def test_without_draws_the_result_has_none():
    result = extrapolate_within(
        slimming_trajectory(PROJECTED, list(PROJECTED.channels), 12),
        [Budget("flops", 8_000_000)],
        projected_uniform=PROJECTED,
        full_uniform=FULL,
        costs=Costs(None),
        stacking="average",
        divisor=8,
        tolerance=0.01,
    )
    assert result["random"] == {} and result["divisor"] in (8, 4, 2, 1)


def test_without_projection_the_point_is_used_as_it_is_and_the_draws_are_matched_to_it():
    # Plain AutoSlim (every transfer factor 1): the searched network is the point itself; the
    # draws (from a space around the full network) are still matched to its cost.
    space = build_space(FULL, min_width=0.15, max_width=1.5, groups=10, divisor=8)
    points = slimming_trajectory(FULL, list(FULL.channels), 12)
    result = extrapolate_within(
        points,
        [Budget("flops", int(0.6 * FULL.cost().flops))],
        projected_uniform=FULL,
        full_uniform=FULL,
        costs=Costs(None),
        stacking="average",
        divisor=8,
        tolerance=0.01,
        space=space,
        random_draws=[0, 1, 2],
    )
    point = next(p for p in points if p.step == result["selected_step"])
    assert result["optimized"].channels == point.channels and result["multiplier"] == 1.0
    target = result["optimized"].cost().flops
    for seed, spec in result["random"].items():
        assert abs(spec.cost().flops / target - 1) <= 0.01, seed
        assert all(c % result["divisor"] == 0 for c in spec.channels.values())
