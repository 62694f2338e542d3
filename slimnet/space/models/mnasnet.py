"""MNasNet-B1 1.0 (Tan et al. 2019) as a channel space; torchvision's `mnasnet1_0` layout."""

from __future__ import annotations

from collections.abc import Sequence

from slimnet.space.channels import Block, Blueprint, Conv, make_divisible
from slimnet.space.models.mobilenet_v2 import inverted_residual

# expansion, output channels, blocks, stride, kernel; stage 0 is the separable conv after the stem
STAGES = (
    (1, 16, 1, 1, 3),
    (3, 24, 3, 2, 3),
    (3, 40, 3, 2, 5),
    (6, 80, 3, 2, 5),
    (6, 96, 2, 1, 3),
    (6, 192, 4, 2, 5),
    (6, 320, 1, 1, 3),
)
DEFAULT_DEPTH = tuple(s[2] for s in STAGES)
DEPTH_SCALABLE = (False, True, True, True, True, True, False)


def blueprint(
    width: float = 1.0,
    depth: Sequence[int] | None = None,
    cifar: bool = False,
    in_channels: int = 3,
    num_classes: int = 1000,
    divisor: int = 8,
) -> Blueprint:
    depth = tuple(DEFAULT_DEPTH if depth is None else depth)
    units: dict[str, int] = {"stem": make_divisible(32 * width, divisor)}
    blocks = [Block("stem", (Conv("stem", "input", "stem", 3, 1 if cifar else 2),))]
    stages: list[list[int]] = []
    previous = "stem"
    for s, ((expansion, channels, _, stride, kernel), count) in enumerate(zip(STAGES, depth)):
        if cifar and s == 1:
            stride = 1
        stage_unit = f"stage{s}"
        units[stage_unit] = make_divisible(channels * width, divisor)
        stages.append([])
        for b in range(count):
            name = f"{stage_unit}.{b}"
            mid = None
            if expansion != 1:
                mid = f"{name}.expand"
                units[mid] = units[previous] * expansion
            stages[-1].append(len(blocks))
            blocks.append(inverted_residual(name, previous, mid, stage_unit, kernel, stride if b == 0 else 1, "relu"))
            previous = stage_unit
    units["last"] = 1280
    blocks.append(Block("last", (Conv("last", previous, "last", 1, 1),)))
    return Blueprint("mnasnet", in_channels, num_classes, depth, blocks, units, stages, dropout=0.2)
