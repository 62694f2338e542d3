"""MobileNetV1 (Howard et al. 2017) as a channel space: a stem and 13 depthwise-separable layers."""

from __future__ import annotations

from collections.abc import Sequence

from slimnet.space.channels import Block, Blueprint, Conv, make_divisible

# output channels, layers, stride of the first layer; one stage per output resolution
STAGES = ((64, 1, 1), (128, 2, 2), (256, 2, 2), (512, 6, 2), (1024, 2, 2))
DEFAULT_DEPTH = tuple(s[1] for s in STAGES)
DEPTH_SCALABLE = (False, True, True, True, True)


def separable(name: str, in_unit: str, out_unit: str, stride: int) -> Block:
    return Block(
        name,
        (
            Conv(f"{name}.dw", in_unit, in_unit, 3, stride, depthwise=True),
            Conv(f"{name}.pw", in_unit, out_unit, 1, 1),
        ),
    )


def blueprint(
    width: float = 1.0,
    depth: Sequence[int] | None = None,
    cifar: bool = False,
    in_channels: int = 3,
    num_classes: int = 1000,
    divisor: int = 8,
) -> Blueprint:
    depth = tuple(DEFAULT_DEPTH if depth is None else depth)
    units = {"stem": make_divisible(32 * width, divisor)}
    blocks = [Block("stem", (Conv("stem", "input", "stem", 3, 1 if cifar else 2),))]
    stages: list[list[int]] = []
    previous = "stem"
    for s, ((channels, _, stride), count) in enumerate(zip(STAGES, depth)):
        if cifar and s == 1:
            stride = 1
        stages.append([])
        for b in range(count):
            unit = f"stage{s}.{b}"  # no residuals: every layer is its own unit
            units[unit] = make_divisible(channels * width, divisor)
            stages[-1].append(len(blocks))
            blocks.append(separable(unit, previous, unit, stride if b == 0 else 1))
            previous = unit
    return Blueprint("mobilenet_v1", in_channels, num_classes, depth, blocks, units, stages)


def from_autoslim_list(values: Sequence[int], depth: Sequence[int] = DEFAULT_DEPTH) -> dict[str, int]:
    """[stem, 13 separable outputs, classes] -> unit channels."""
    channels = {"stem": values[0]}
    position = 1
    for s, count in enumerate(depth):
        for b in range(count):
            channels[f"stage{s}.{b}"] = values[position]
            position += 1
    return channels


def autoslim_list_length(depth: Sequence[int] = DEFAULT_DEPTH) -> int:
    return 1 + sum(depth) + 1
