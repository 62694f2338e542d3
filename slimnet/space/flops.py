"""Analytic cost of a network: FLOPs, parameters and memory from the blueprint alone.

FLOPs are multiply-accumulates of conv and linear layers, BN excluded (the papers'
convention). Parameters include BN's affine weights and the classifier bias, so a plain
network counts exactly what torchvision's equivalent does.
"""

from __future__ import annotations

from dataclasses import dataclass

from slimnet.space.channels import Blueprint


@dataclass(frozen=True)
class Cost:
    flops: int
    params: int
    memory: int  # bytes of all weights and feature maps in float32 (AutoSlim Table 1)


def conv_out(size: int, kernel: int, stride: int) -> int:
    return (size + 2 * (kernel // 2) - kernel) // stride + 1


def cost(blueprint: Blueprint, channels: dict[str, int], resolution: int) -> Cost:
    widths = dict(channels)
    widths["input"] = blueprint.in_channels
    flops = params = activations = 0
    size = resolution
    activations += widths["input"] * size * size
    for block in blueprint.blocks:
        block_in = size
        for conv in block.convs:
            cin, cout = widths[conv.in_unit], widths[conv.out_unit]
            size = conv_out(size, conv.kernel, conv.stride)
            weights = conv.kernel * conv.kernel * (1 if conv.depthwise else cin) * cout
            flops += weights * size * size
            params += weights + 2 * cout  # conv weight + BN affine
            activations += cout * size * size
        if block.residual == "project":
            cin, cout = widths[block.in_unit], widths[block.out_unit]
            out = conv_out(block_in, 1, block.stride)
            flops += cin * cout * out * out
            params += cin * cout + 2 * cout
            activations += cout * out * out
        if block.pool:
            size = conv_out(size, 3, 2)
            activations += widths[block.out_unit] * size * size
    features = widths[blueprint.last_unit]
    flops += features * blueprint.num_classes
    params += features * blueprint.num_classes + blueprint.num_classes
    activations += features + blueprint.num_classes
    return Cost(flops=flops, params=params, memory=4 * (params + activations))


def flops(blueprint: Blueprint, channels: dict[str, int], resolution: int) -> int:
    return cost(blueprint, channels, resolution).flops
