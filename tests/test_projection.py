"""The projected problem the search runs on: every layer narrowed alike, and a depth that keeps
stack-average meaningful."""

from __future__ import annotations

import pytest

from slimnet.config import ModelParams, SupernetParams, TransferParams
from slimnet.optimizers.transfer import stack_depth
from slimnet.pipeline.specs import full_uniform, projected_uniform
from slimnet.space.flops import cost
from slimnet.space.models import build_blueprint, default_depth, scaled_depth
from slimnet.space.spec import ArchSpec

META = {"resolution": 28, "search_resolution": 16, "num_classes": 10, "in_channels": 1}
MODEL = ModelParams(arch="mobilenet_v2", width=0.35, cifar=True, divisor=8)
SUPERNET = SupernetParams(divisor=2)


def head_share(spec: ArchSpec, resolution: int) -> float:
    """Fraction of a MobileNetV2's FLOPs in its last 1x1 conv and the classifier (at one resolution)."""
    blueprint = spec.blueprint()
    total = cost(blueprint, spec.channels, resolution).flops
    headless = cost(blueprint, {**spec.channels, "last": 0}, resolution).flops
    return (total - headless) / total


def test_projection_narrows_mobilenet_v2_last_conv_like_every_other_layer():
    full = full_uniform(MODEL, META)
    projected = projected_uniform(MODEL, TransferParams(width=0.7, depth=1.0, resolution=16), SUPERNET, META)
    assert full.channels["last"] == 1280
    assert projected.channels["last"] == 896  # 0.7 x 1280, not the architecture's 1280 floor
    # Same depth and resolution: the head's share of the FLOPs is the full network's (rounding of the
    # narrow layers to 2 channels moves it by up to 10%); with 1280 kept it was far above.
    shares = head_share(projected, 28), head_share(full, 28)
    assert shares[0] == pytest.approx(shares[1], rel=0.1), shares
    for unit, count in full.channels.items():
        assert abs(projected.channels[unit] - 0.7 * count) <= 2, unit


def test_without_projection_the_searched_network_is_the_full_one():
    full = full_uniform(MODEL, META)
    no_projection = TransferParams(width=1.0, depth=1.0, resolution=None, data_fraction=1.0)
    plain = projected_uniform(MODEL, no_projection, SUPERNET, {**META, "search_resolution": 28})
    assert plain.channels == full.channels and plain.depth == full.depth and plain.resolution == full.resolution


@pytest.mark.parametrize("arch", ["mobilenet_v2", "mnasnet", "resnet18", "resnet50"])
def test_half_depth_keeps_two_blocks_where_the_stage_has_two(arch):
    for count, projected in zip(default_depth(arch), scaled_depth(arch, 0.5)):
        assert projected >= min(2, count)


def test_stack_average_of_the_default_projection_never_copies_block_0():
    # Each source unit gets its own multiplier; a stacked extra block must never take block 0's.
    source = scaled_depth("mobilenet_v2", 0.5)
    target = default_depth("mobilenet_v2")
    units = list(build_blueprint("mobilenet_v2", depth=source).units)
    multipliers = {unit: 0.5 + i / 100 for i, unit in enumerate(units)}
    stacked = stack_depth(multipliers, source, target, "mobilenet_v2", "average")
    blueprint = build_blueprint("mobilenet_v2", depth=target)
    for s, (have, need) in enumerate(zip(source, target)):
        for b in range(have, need):
            unit = f"stage{s}.{b}.expand"
            assert unit in blueprint.units
            assert stacked[unit] != multipliers[f"stage{s}.0.expand"], unit
