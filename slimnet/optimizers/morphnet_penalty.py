"""MorphNet (Gordon et al., CVPR 2018): a resource-weighted L1 penalty on the BN scales.

Each searchable unit is one group: its channel c scores r[c] = max |gamma[c]| over the BN
layers that write the unit (layers tied by a residual add share a unit, so they shrink
together; the max is MorphNet's default grouping). A layer with input unit i and output unit
o costs C * A_i * A_o (A: channels alive, r > threshold; C: the resource per channel pair,
for FLOPs kernel area x output positions). Its penalty is the cost's derivative form,
C * (A_i * R_o + A_o * R_i) with R the sum of r, so a channel is pushed down in proportion to
what keeping it costs given the other side's live width. A depthwise layer costs C * A and is
penalised C * (R_i + R_o). Fixed widths (the image, the classes) count as alive with R = 0.

Shrink is reading the alive channels; here every threshold is read (:func:`ranked_channels`
orders a unit's channels by r, so keeping the top k is a prefix of a slimmable network) and
extrapolate's one global multiplier is the expand step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from slimnet.nn.network import Network
from slimnet.space.channels import Blueprint
from slimnet.space.flops import conv_out

Resource = Literal["flops", "params"]


@dataclass(frozen=True)
class LayerCost:
    """One conv or linear layer as the regularizer sees it: ``in_unit``/``out_unit`` are None
    where the width is fixed (``in_width``/``out_width``: the image's channels, the classes)."""

    in_unit: str | None
    out_unit: str | None
    coefficient: float  # resource per (input, output) channel pair; per channel for depthwise
    depthwise: bool = False
    in_width: int = 0
    out_width: int = 0


def layer_costs(blueprint: Blueprint, resolution: int, resource: Resource = "flops") -> list[LayerCost]:
    """Every layer's cost coefficient, walking the blueprint as space.flops.cost does (so the
    alive cost of a configuration is its counted FLOPs or conv/linear weights)."""

    def unit(name: str) -> str | None:
        return None if name == blueprint.input_unit else name

    def per_pair(kernel: int, size: int) -> float:
        return float(kernel * kernel * (size * size if resource == "flops" else 1))

    layers: list[LayerCost] = []
    size = resolution
    for block in blueprint.blocks:
        block_in = size
        for conv in block.convs:
            size = conv_out(size, conv.kernel, conv.stride)
            layers.append(
                LayerCost(
                    unit(conv.in_unit),
                    conv.out_unit,
                    per_pair(conv.kernel, size),
                    depthwise=conv.depthwise,
                    in_width=blueprint.in_channels,
                )
            )
        if block.residual == "project":
            out = conv_out(block_in, 1, block.stride)
            layers.append(LayerCost(unit(block.in_unit), block.out_unit, per_pair(1, out), in_width=blueprint.in_channels))
        if block.pool:
            size = conv_out(size, 3, 2)
    layers.append(LayerCost(blueprint.last_unit, None, 1.0, out_width=blueprint.num_classes))
    return layers


def unit_batchnorms(network: Network) -> dict[str, list[nn.BatchNorm2d]]:
    """The BN layers that write each unit (body convs and projection shortcuts)."""
    found: dict[str, list[nn.BatchNorm2d]] = {}
    for block, module in zip(network.blueprint.blocks, network.blocks):
        for conv, layer in zip(block.convs, module.body):
            found.setdefault(conv.out_unit, []).append(layer[1])
        if module.shortcut is not None:
            found.setdefault(block.out_unit, []).append(module.shortcut[1])
    return found


class Regularizer:
    """The resource-weighted group-L1 penalty of one network (see the module docstring)."""

    def __init__(self, network: Network, layers: list[LayerCost], threshold: float):
        self.layers, self.threshold = layers, threshold
        self.batchnorms = unit_batchnorms(network)

    def scores(self) -> dict[str, torch.Tensor]:
        """r per unit: each channel's largest |gamma| over the unit's BN layers."""
        return {unit: torch.stack([bn.weight.abs() for bn in layers]).amax(dim=0) for unit, layers in self.batchnorms.items()}

    def penalty(self) -> torch.Tensor:
        scores = self.scores()
        alive = {unit: (r.detach() > self.threshold).sum().to(r.dtype) for unit, r in scores.items()}
        total = torch.zeros((), dtype=next(iter(scores.values())).dtype, device=next(iter(scores.values())).device)
        for layer in self.layers:
            r_in = scores[layer.in_unit].sum() if layer.in_unit else 0.0
            r_out = scores[layer.out_unit].sum() if layer.out_unit else 0.0
            if layer.depthwise:
                total = total + layer.coefficient * (r_in + r_out)
                continue
            a_in = alive[layer.in_unit] if layer.in_unit else layer.in_width
            a_out = alive[layer.out_unit] if layer.out_unit else layer.out_width
            total = total + layer.coefficient * (a_in * r_out + a_out * r_in)
        return total

    def alive_counts(self) -> dict[str, int]:
        """Channels per unit scoring above the threshold, never fewer than one."""
        return {unit: max(1, int((r.detach() > self.threshold).sum())) for unit, r in self.scores().items()}


def alive_cost(layers: list[LayerCost], counts: dict[str, int]) -> float:
    """The resource of the network with ``counts`` channels per unit (the penalty's cost)."""
    total = 0.0
    for layer in layers:
        a_in = counts[layer.in_unit] if layer.in_unit else layer.in_width
        a_out = counts[layer.out_unit] if layer.out_unit else layer.out_width
        total += layer.coefficient * (a_out if layer.depthwise else a_in * a_out)
    return total


@torch.no_grad()
def ranked_channels(scores: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Each unit's channel order, highest score first (ties: lower index first, so the order
    is a function of the scores alone)."""
    return {unit: torch.sort(-r.detach().double(), stable=True).indices for unit, r in scores.items()}


@torch.no_grad()
def permute_units(network: Network, order: dict[str, torch.Tensor]) -> None:
    """Reorder every unit's channels by ``order`` in place; the network computes the same
    function (each tensor indexed by a unit is permuted along that unit's axis)."""

    def take(tensor: torch.Tensor, dim: int, index: torch.Tensor) -> None:
        tensor.copy_(tensor.index_select(dim, index.to(tensor.device)))

    def permute_bn(bn: nn.BatchNorm2d, index: torch.Tensor) -> None:
        for tensor in (bn.weight, bn.bias, bn.running_mean, bn.running_var):
            take(tensor.data if isinstance(tensor, nn.Parameter) else tensor, 0, index)

    blueprint = network.blueprint
    for block, module in zip(blueprint.blocks, network.blocks):
        for conv, layer in zip(block.convs, module.body):
            weight = layer[0].weight.data
            if conv.out_unit in order:
                take(weight, 0, order[conv.out_unit])
                permute_bn(layer[1], order[conv.out_unit])
            if not conv.depthwise and conv.in_unit in order:
                take(weight, 1, order[conv.in_unit])
        if module.shortcut is not None:
            weight = module.shortcut[0].weight.data
            if block.out_unit in order:
                take(weight, 0, order[block.out_unit])
                permute_bn(module.shortcut[1], order[block.out_unit])
            if block.in_unit in order:
                take(weight, 1, order[block.in_unit])
    if blueprint.last_unit in order:
        take(network.classifier.weight.data, 1, order[blueprint.last_unit])
