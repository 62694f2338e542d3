"""The baselines beside the searched network, and the choice of trajectory point."""

from __future__ import annotations

import math

import pytest

from slimnet.arch import uniform_spec
from slimnet.baselines import projected_uniform, random_network
from slimnet.budgets import Budget, Costs, extrapolate_within
from slimnet.flops import cost
from slimnet.models import scaled_depth
from slimnet.supernet import build_space
from slimnet.transfer import width_multipliers

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


def draw(seed: int, target: int = 6_000_000):
    return random_network(
        SPACE,
        projected_uniform=PROJECTED,
        full_uniform=FULL,
        target=target,
        metric="flops",
        stacking="average",
        divisor=8,
        tolerance=0.01,
        seed=seed,
    )


def test_random_network_is_a_seeded_draw_from_the_space_at_the_target():
    spec, drawn = draw(0)
    assert SPACE.problems(drawn) is None  # a configuration the supernet can run
    assert abs(spec.cost().flops / 6e6 - 1) <= 0.01
    assert spec.depth == FULL.depth and set(spec.channels) == set(FULL.channels)
    again, drawn_again = draw(0)
    assert again == spec and drawn_again == drawn
    other, drawn_other = draw(1)
    assert drawn_other != drawn and other.channels != spec.channels


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


def test_random_draws_are_not_uniform_networks():
    # A uniform draw would make the random baseline the uniform one again.
    _, drawn = draw(0)
    ratios = set(round(r, 2) for r in width_multipliers(PROJECTED.with_channels(drawn), PROJECTED).values())
    assert len(ratios) > 5


def slimming_trajectory(projected, units, steps: int):
    """A trajectory that slims only ``units`` (5% per step): their stages are deeper in the full
    network than in the projection, so each step saves a larger share of the full network."""
    from slimnet.search import CostRatio
    from tests.test_transfer import trajectory_point

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
