import pytest

from slimnet.console.errors import SlimnetError
from slimnet.optimizers.transfer import (
    channels_per_layer,
    format_size,
    match_cost,
    stack_depth,
    uniform_baseline,
    width_multipliers,
)
from slimnet.space.models import ARCHS, build_blueprint, scaled_depth
from slimnet.space.spec import ArchSpec, uniform_spec

RESOLUTION = 64
CLASSES = 10


def distinct_multipliers(arch: str, depth: tuple[int, ...]) -> dict[str, float]:
    """A different multiplier per unit, so a test sees which source unit each value came from."""
    units = build_blueprint(arch, depth=depth).units
    return {unit: 0.5 + 0.01 * i for i, unit in enumerate(units)}


def small_uniform(arch: str, width: float = 1.0, depth_multiplier: float = 0.5) -> ArchSpec:
    return uniform_spec(arch, width, resolution=RESOLUTION, num_classes=CLASSES, depth=scaled_depth(arch, depth_multiplier))


def relative_error(value: int, target: int) -> float:
    return abs(value / target - 1)


# --- format_size ---


@pytest.mark.parametrize(
    "n, text",
    [(880_000, "880K"), (12_345_678, "12.3M"), (880_000_000, "880M"), (1_500_000_000, "1.5G"), (999, "999"), (999_700, "1M")],
)
def test_format_size(n, text):
    assert format_size(n) == text


def test_format_size_rounds_bounds_inwards():
    assert format_size(12_301_000, "up") == "12.4M"
    assert format_size(12_399_000, "down") == "12.3M"


# --- multipliers and stacking ---


def test_width_multipliers_are_per_unit_ratios():
    reference = small_uniform("mobilenet_v2", 0.5)
    wide = small_uniform("mobilenet_v2", 1.0)
    ratios = width_multipliers(wide, reference)
    assert set(ratios) == set(reference.channels)
    assert ratios["stage3"] == wide.channels["stage3"] / reference.channels["stage3"]


def test_width_multipliers_reject_other_depth():
    with pytest.raises(SlimnetError, match="depth"):
        width_multipliers(small_uniform("mobilenet_v2", depth_multiplier=1.0), small_uniform("mobilenet_v2"))


MBV2_SOURCE = (1, 1, 2, 2, 2, 2, 1)
MBV2_TARGET = (1, 2, 3, 4, 3, 3, 1)


@pytest.mark.parametrize("strategy", ["last", "average"])
def test_stack_mobilenet_v2(strategy):
    m = distinct_multipliers("mobilenet_v2", MBV2_SOURCE)
    stacked = stack_depth(m, MBV2_SOURCE, MBV2_TARGET, "mobilenet_v2", strategy)
    assert set(stacked) == set(build_blueprint("mobilenet_v2", depth=MBV2_TARGET).units)
    # Units outside repeated blocks map by name.
    for unit in ("stem", "stage0", "stage3", "stage6", "last"):
        assert stacked[unit] == m[unit]
    # Source blocks are the first blocks of each target stage.
    assert stacked["stage3.0.expand"] == m["stage3.0.expand"]
    assert stacked["stage3.1.expand"] == m["stage3.1.expand"]
    # Two source blocks: "last" repeats block 1, "average" is the mean of blocks 1..1.
    assert stacked["stage3.2.expand"] == stacked["stage3.3.expand"] == m["stage3.1.expand"]
    # One source block: both fall back to block 0.
    assert stacked["stage1.1.expand"] == m["stage1.0.expand"]


RESNET_SOURCE = (2, 3, 4, 2)
RESNET_TARGET = (3, 4, 6, 3)


def test_stack_resnet50_last_and_average_differ_where_stage_varies():
    m = distinct_multipliers("resnet50", RESNET_SOURCE)
    last = stack_depth(m, RESNET_SOURCE, RESNET_TARGET, "resnet50", "last")
    average = stack_depth(m, RESNET_SOURCE, RESNET_TARGET, "resnet50", "average")
    for stacked in (last, average):
        assert stacked["stage3.3.mid1"] == m["stage3.3.mid1"]
        assert stacked["stage3"] == m["stage3"]
        assert stacked["stem"] == m["stem"]
    for suffix in ("mid1", "mid2"):
        assert last[f"stage3.4.{suffix}"] == last[f"stage3.5.{suffix}"] == m[f"stage3.3.{suffix}"]
        mean = sum(m[f"stage3.{b}.{suffix}"] for b in (1, 2, 3)) / 3  # block 0 excluded
        assert average[f"stage3.4.{suffix}"] == pytest.approx(mean)
        assert average[f"stage3.5.{suffix}"] == pytest.approx(mean)
        assert average[f"stage3.4.{suffix}"] != last[f"stage3.4.{suffix}"]
        # Two-block stage: the mean of blocks 1..1 is block 1.
        assert average[f"stage1.2.{suffix}"] == last[f"stage1.2.{suffix}"] == m[f"stage1.1.{suffix}"]


def test_stack_mobilenet_v1_per_layer_units():
    source, target = (1, 1, 1, 3, 1), (1, 2, 2, 6, 2)
    m = distinct_multipliers("mobilenet_v1", source)
    last = stack_depth(m, source, target, "mobilenet_v1", "last")
    average = stack_depth(m, source, target, "mobilenet_v1", "average")
    assert last["stage3.5"] == m["stage3.2"]
    assert average["stage3.5"] == pytest.approx((m["stage3.1"] + m["stage3.2"]) / 2)
    assert last["stage1.1"] == average["stage1.1"] == m["stage1.0"]


def test_stack_to_shallower_keeps_first_blocks():
    m = distinct_multipliers("resnet50", RESNET_TARGET)
    stacked = stack_depth(m, RESNET_TARGET, (1, 2, 2, 1), "resnet50", "average")
    assert set(stacked) == set(build_blueprint("resnet50", depth=(1, 2, 2, 1)).units)
    assert all(stacked[u] == m[u] for u in stacked)


@pytest.mark.parametrize("arch", ARCHS)
def test_uniform_multipliers_stack_the_same_either_way(arch):
    source = scaled_depth(arch, 0.5)
    target = build_blueprint(arch).depth
    m = {unit: 0.1 for unit in build_blueprint(arch, depth=source).units}  # 0.1 is not exact in binary
    last = stack_depth(m, source, target, arch, "last")
    assert last == stack_depth(m, source, target, arch, "average")
    assert set(last.values()) == {0.1}


def test_stack_rejects_missing_units():
    m = distinct_multipliers("mobilenet_v2", MBV2_SOURCE)
    del m["stage2.1.expand"]
    with pytest.raises(SlimnetError, match="stage2.1.expand"):
        stack_depth(m, MBV2_SOURCE, MBV2_TARGET, "mobilenet_v2", "last")


# --- matching a cost ---


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("fraction", [0.5, 1.3])
def test_match_cost_within_one_percent(arch, fraction):
    template = small_uniform(arch)
    target = int(fraction * template.cost().flops)
    m = distinct_multipliers(arch, template.depth)
    spec, k, _ = match_cost(template, m, dict(template.channels), target, tolerance=0.01)
    assert relative_error(spec.cost().flops, target) <= 0.01
    assert spec.depth == template.depth and spec.resolution == template.resolution
    assert k > 0


def test_match_cost_params():
    template = small_uniform("resnet18")
    target = int(0.7 * template.cost().params)
    spec, _, _ = match_cost(template, {u: 1.0 for u in template.channels}, dict(template.channels), target, metric="params")
    assert relative_error(spec.cost().params, target) <= 0.01


def test_match_cost_keeps_divisor_when_it_suffices():
    template = small_uniform("resnet50")
    spec, _, step = match_cost(template, {u: 1.0 for u in template.channels}, dict(template.channels), template.cost().flops)
    assert spec.cost().flops == template.cost().flops
    assert step == 8 and all(c % 8 == 0 for c in spec.channels.values())


def test_match_cost_reports_its_grid_and_keeps_to_the_grids_given():
    template = small_uniform("mobilenet_v2")
    ones = {u: 1.0 for u in template.channels}
    target = int(0.6 * template.cost().flops)
    spec, _, step = match_cost(template, ones, dict(template.channels), target, steps=[4])
    assert step == 4 and all(c % 4 == 0 for c in spec.channels.values())
    assert relative_error(spec.cost().flops, target) <= 0.01
    # A grid too coarse for the tolerance is not left for a finer one when only it is given.
    with pytest.raises(SlimnetError, match="closest reachable"):
        match_cost(template, ones, dict(template.channels), target, tolerance=1e-6, steps=[64])
    uniform, _, step = uniform_baseline(
        "mobilenet_v2", target, resolution=RESOLUTION, num_classes=CLASSES, depth=template.depth, steps=[2]
    )
    assert step == 2 and all(c % 2 == 0 for c in uniform.channels.values())


def test_match_cost_unreachable_target_names_closest():
    template = small_uniform("mobilenet_v2")
    with pytest.raises(SlimnetError, match="closest reachable"):
        match_cost(template, {u: 1.0 for u in template.channels}, dict(template.channels), 10)


@pytest.mark.parametrize("arch", ARCHS)
def test_uniform_baseline_within_one_percent(arch):
    reference = small_uniform(arch)
    target = int(0.6 * reference.cost().flops)
    spec, width, _ = uniform_baseline(
        arch,
        target,
        resolution=RESOLUTION,
        num_classes=CLASSES,
        depth=reference.depth,
        tolerance=0.01,
    )
    assert relative_error(spec.cost().flops, target) <= 0.01
    assert spec.depth == reference.depth
    assert 0.3 < width < 1.0


def test_uniform_baseline_far_below_narrowest_rounded_width():
    # Very narrow ResNet-50s merge units; the baseline falls back to per-unit rounding.
    reference = small_uniform("resnet50")
    target = int(0.003 * reference.cost().flops)
    spec, _, _ = uniform_baseline("resnet50", target, resolution=RESOLUTION, num_classes=CLASSES, depth=reference.depth)
    assert set(spec.channels) == set(reference.channels)
    assert relative_error(spec.cost().flops, target) <= 0.01


# --- per-layer channels ---


def test_channels_per_layer_lists_every_conv():
    spec = small_uniform("mobilenet_v2")
    rows = channels_per_layer(spec)
    convs = [conv for block in spec.blueprint().blocks for conv in block.convs]
    assert [r["layer"] for r in rows] == list(range(len(convs)))
    assert [r["name"] for r in rows] == [c.name for c in convs]
    assert rows[0] == {"layer": 0, "name": "stem", "channels": spec.channels["stem"]}
    assert rows[-1]["channels"] == spec.channels["last"]
    dw = next(r for r in rows if r["name"] == "stage2.1.dw")
    assert dw["channels"] == spec.channels["stage2.1.expand"]
