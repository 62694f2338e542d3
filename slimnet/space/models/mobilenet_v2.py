"""MobileNetV2 (Sandler et al. 2018) as a channel space; torchvision's layout at width 1.0."""

from __future__ import annotations

from collections.abc import Sequence

from slimnet.space.channels import Block, Blueprint, Conv, make_divisible

# expansion, output channels, blocks, stride of the first block (torchvision's table)
STAGES = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))
DEFAULT_DEPTH = tuple(s[2] for s in STAGES)
# The width-transfer paper keeps the first and last stage at one block when projecting depth.
DEPTH_SCALABLE = (False, True, True, True, True, True, False)


def inverted_residual(name: str, in_unit: str, mid_unit: str | None, out_unit: str, kernel: int, stride: int, act: str) -> Block:
    convs = []
    dw_unit = in_unit
    if mid_unit is not None:
        convs.append(Conv(f"{name}.expand", in_unit, mid_unit, 1, 1, act=act))
        dw_unit = mid_unit
    convs.append(Conv(f"{name}.dw", dw_unit, dw_unit, kernel, stride, depthwise=True, act=act))
    convs.append(Conv(f"{name}.project", dw_unit, out_unit, 1, 1, act=None))
    residual = "identity" if stride == 1 and in_unit == out_unit else None
    return Block(name, tuple(convs), residual=residual)


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
    # CIFAR variant (AutoSlim Table 2): stem stride 1 and the first stride-2 stage at stride 1.
    blocks = [Block("stem", (Conv("stem", "input", "stem", 3, 1 if cifar else 2, act="relu6"),))]
    stages: list[list[int]] = []
    previous = "stem"
    for s, ((expansion, channels, _, stride), count) in enumerate(zip(STAGES, depth)):
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
                units[mid] = int(round(units[previous] * expansion))
            stages[-1].append(len(blocks))
            blocks.append(inverted_residual(name, previous, mid, stage_unit, 3, stride if b == 0 else 1, "relu6"))
            previous = stage_unit
    units["last"] = make_divisible(1280 * max(1.0, width), divisor)
    blocks.append(Block("last", (Conv("last", previous, "last", 1, 1, act="relu6"),)))
    return Blueprint("mobilenet_v2", in_channels, num_classes, depth, blocks, units, stages, dropout=0.2)


def from_autoslim_list(values: Sequence[int], depth: Sequence[int] = DEFAULT_DEPTH) -> dict[str, int]:
    """[stem, block0-out, (expand, out) for each later block, last conv, classes] -> unit channels."""
    channels = {"stem": values[0], "stage0": values[1]}
    position = 2
    for s, count in enumerate(depth):
        if s == 0:
            continue
        for b in range(count):
            channels[f"stage{s}.{b}.expand"] = values[position]
            channels.setdefault(f"stage{s}", values[position + 1])
            if values[position + 1] != channels[f"stage{s}"]:
                raise ValueError(
                    f"block {s}.{b} outputs {values[position + 1]} channels but stage {s} is {channels[f'stage{s}']}: "
                    "blocks joined by a residual add must share one width"
                )
            position += 2
    channels["last"] = values[position]
    return channels


def autoslim_list_length(depth: Sequence[int] = DEFAULT_DEPTH) -> int:
    return 2 + 2 * (sum(depth) - depth[0]) + 2
