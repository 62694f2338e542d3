"""ResNets (He et al. 2016) as channel spaces: basic blocks (18/34), bottlenecks (50/101).

torchvision's layout (stride on the 3x3 conv of a bottleneck). Each stage's output is one
unit shared through the residual adds; a block's inner widths are units of their own.
Where a stage starts without a projection shortcut (ResNet-18/34's first stage) its output
is coupled to the stem, so the stem unit covers both.
"""

from __future__ import annotations

from collections.abc import Sequence

from slimnet.space.channels import Block, Blueprint, Conv, make_divisible

PLANES = (64, 128, 256, 512)
LAYOUTS = {
    "resnet18": ("basic", (2, 2, 2, 2)),
    "resnet34": ("basic", (3, 4, 6, 3)),
    "resnet50": ("bottleneck", (3, 4, 6, 3)),
    "resnet101": ("bottleneck", (3, 4, 23, 3)),
}
DEPTH_SCALABLE = (True, True, True, True)


def basic_block(name: str, in_unit: str, out_unit: str, stride: int) -> Block:
    mid = f"{name}.mid"
    convs = (Conv(f"{name}.conv1", in_unit, mid, 3, stride), Conv(f"{name}.conv2", mid, out_unit, 3, 1, act=None))
    return Block(name, convs, residual="identity" if in_unit == out_unit and stride == 1 else "project", post_act="relu")


def bottleneck(name: str, in_unit: str, out_unit: str, stride: int) -> Block:
    mid1, mid2 = f"{name}.mid1", f"{name}.mid2"
    convs = (
        Conv(f"{name}.conv1", in_unit, mid1, 1, 1),
        Conv(f"{name}.conv2", mid1, mid2, 3, stride),
        Conv(f"{name}.conv3", mid2, out_unit, 1, 1, act=None),
    )
    return Block(name, convs, residual="identity" if in_unit == out_unit and stride == 1 else "project", post_act="relu")


def blueprint(
    arch: str,
    width: float = 1.0,
    depth: Sequence[int] | None = None,
    cifar: bool = False,
    in_channels: int = 3,
    num_classes: int = 1000,
    divisor: int = 8,
) -> Blueprint:
    kind, default_depth = LAYOUTS[arch]
    depth = tuple(default_depth if depth is None else depth)
    expansion = 4 if kind == "bottleneck" else 1
    units = {"stem": make_divisible(64 * width, divisor)}
    # CIFAR variant: a 3x3 stride-1 stem without max-pool, as for 32 px inputs.
    stem = Conv("stem", "input", "stem", 3 if cifar else 7, 1 if cifar else 2)
    blocks = [Block("stem", (stem,), pool=not cifar)]
    stages: list[list[int]] = []
    previous = "stem"
    for s, (planes, count) in enumerate(zip(PLANES, depth)):
        stride = 1 if s == 0 else 2
        out_channels = make_divisible(planes * expansion * width, divisor)
        # Coupling is structural: decided on the width-1.0 layout, so every width has the same units.
        coupled = stride == 1 and (64 if s == 0 else PLANES[s - 1] * expansion) == planes * expansion
        stage_unit = previous if coupled else f"stage{s + 1}"
        units.setdefault(stage_unit, out_channels)
        mid_channels = make_divisible(planes * width, divisor)
        stages.append([])
        for b in range(count):
            name = f"stage{s + 1}.{b}"
            stages[-1].append(len(blocks))
            if kind == "bottleneck":
                units[f"{name}.mid1"] = mid_channels
                units[f"{name}.mid2"] = mid_channels
                blocks.append(bottleneck(name, previous, stage_unit, stride if b == 0 else 1))
            else:
                units[f"{name}.mid"] = mid_channels
                blocks.append(basic_block(name, previous, stage_unit, stride if b == 0 else 1))
            previous = stage_unit
    return Blueprint(arch, in_channels, num_classes, depth, blocks, units, stages)


def from_autoslim_list(values: Sequence[int], depth: Sequence[int]) -> dict[str, int]:
    """ResNet-50: [stem, per stage: stage-out, (1x1-mid, 3x3-mid, out) per block, classes]."""
    channels = {"stem": values[0]}
    position = 1
    for s, count in enumerate(depth):
        stage_unit = f"stage{s + 1}"
        channels[stage_unit] = values[position]
        position += 1
        for b in range(count):
            mid1, mid2, out = values[position : position + 3]
            if out != channels[stage_unit]:
                raise ValueError(
                    f"block {s + 1}.{b} outputs {out} channels but stage {s + 1} is {channels[stage_unit]}: "
                    "blocks joined by a residual add must share one width"
                )
            channels[f"{stage_unit}.{b}.mid1"] = mid1
            channels[f"{stage_unit}.{b}.mid2"] = mid2
            position += 3
    return channels


def autoslim_list_length(depth: Sequence[int]) -> int:
    return 1 + sum(1 + 3 * count for count in depth) + 1
