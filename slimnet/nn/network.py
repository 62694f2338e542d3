"""One nn.Module for every architecture, built from a blueprint.

``Network(blueprint, channels, slimmable=False)`` is the plain static network of those
channels (torch.nn layers, the parameter count of torchvision's model). With
``slimmable=True`` the channels are the supernet's maxima and :meth:`Network.set_channels`
switches the active sub-network in place.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from slimnet.nn.safe_conv import Conv2d
from slimnet.nn.sliced import SlimBatchNorm2d, SlimConv2d, SlimLinear
from slimnet.space.channels import Block, Blueprint, Conv

ACTIVATIONS = {"relu": nn.ReLU, "relu6": nn.ReLU6}


class LayerFactory:
    def __init__(self, channels: Mapping[str, int], slimmable: bool):
        self.channels = channels
        self.slimmable = slimmable
        self.active: dict[str, int] = dict(channels)

    def conv(self, in_unit: str, out_unit: str, kernel: int, stride: int, depthwise: bool) -> nn.Module:
        cin, cout = self.channels[in_unit], self.channels[out_unit]
        if self.slimmable:
            return SlimConv2d(cin, cout, kernel, stride, depthwise, out_unit, self.active)
        return Conv2d(cin, cout, kernel, stride, kernel // 2, groups=cin if depthwise else 1, bias=False)

    def bn(self, unit: str) -> nn.Module:
        return (SlimBatchNorm2d if self.slimmable else nn.BatchNorm2d)(self.channels[unit])

    def linear(self, in_unit: str, out_features: int) -> nn.Module:
        return (SlimLinear if self.slimmable else nn.Linear)(self.channels[in_unit], out_features)


class ConvBNAct(nn.Sequential):
    def __init__(self, conv: Conv, layers: LayerFactory):
        modules: list[nn.Module] = [
            layers.conv(conv.in_unit, conv.out_unit, conv.kernel, conv.stride, conv.depthwise),
            layers.bn(conv.out_unit),
        ]
        if conv.act is not None:
            modules.append(ACTIVATIONS[conv.act](inplace=True))
        super().__init__(*modules)


class BlockModule(nn.Module):
    def __init__(self, block: Block, layers: LayerFactory):
        super().__init__()
        self.body = nn.Sequential(*(ConvBNAct(conv, layers) for conv in block.convs))
        self.residual = block.residual
        self.shortcut = None
        if block.residual == "project":
            self.shortcut = nn.Sequential(
                layers.conv(block.in_unit, block.out_unit, 1, block.stride, False), layers.bn(block.out_unit)
            )
        self.post_act = ACTIVATIONS[block.post_act](inplace=True) if block.post_act else None
        self.pool = nn.MaxPool2d(3, 2, 1) if block.pool else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_from(x)

    def forward_from(
        self, x: torch.Tensor, conv: int = 0, h: torch.Tensor | None = None, capture: dict[int, list] | None = None
    ) -> torch.Tensor:
        """The block's output computed from body conv ``conv`` on, ``h`` being that conv's input
        (``x``, the block's input, feeds the residual path). ``capture`` collects the inputs of
        the body convs it names."""
        if conv == 0 and capture is None:
            out = self.body(x)  # the training path: no per-layer bookkeeping
        else:
            out = x if h is None else h
            for index, layer in enumerate(self.body):
                if index < conv:
                    continue
                if capture is not None and index in capture:
                    capture[index].append(out)
                out = layer(out)
        if self.residual == "identity":
            out = out + x
        elif self.residual == "project":
            out = out + self.shortcut(x)
        if self.post_act is not None:
            out = self.post_act(out)
        if self.pool is not None:
            out = self.pool(out)
        return out


class Network(nn.Module):
    def __init__(self, blueprint: Blueprint, channels: Mapping[str, int] | None = None, slimmable: bool = False):
        super().__init__()
        channels = dict(blueprint.units if channels is None else channels)
        channels["input"] = blueprint.in_channels
        self.blueprint = blueprint
        self.layers = LayerFactory(channels, slimmable)
        self.slimmable = slimmable
        self.blocks = nn.ModuleList(BlockModule(block, self.layers) for block in blueprint.blocks)
        self.dropout = nn.Dropout(blueprint.dropout) if blueprint.dropout > 0 else nn.Identity()
        self.classifier = self.layers.linear(blueprint.last_unit, blueprint.num_classes)
        _init_weights(self)

    @property
    def active(self) -> dict[str, int]:
        return self.layers.active

    def set_channels(self, channels: Mapping[str, int]) -> None:
        """Switch the active sub-network (supernets only); the caller validates choices."""
        if not self.slimmable:
            raise RuntimeError("set_channels needs a slimmable network")
        self.layers.active.update(channels)

    def features(self, x: torch.Tensor, start: int = 0, stop: int | None = None) -> torch.Tensor:
        for block in self.blocks[start:stop]:
            x = block(x)
        return x

    def head(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)
        return self.classifier(self.dropout(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def _init_weights(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)


def sliced_state_dict(supernet: Network, plain: Network) -> dict[str, torch.Tensor]:
    """The supernet's weights cut to the plain network's shapes (lower-index channels kept)."""
    source = supernet.state_dict()
    state = {}
    for name, target in plain.state_dict().items():
        tensor = source[name]
        if tensor.dim() > 0:
            tensor = tensor[tuple(slice(0, n) for n in target.shape)]
        state[name] = tensor.clone()
    return state


def plain_network(spec) -> Network:
    """The static network of an arch spec (slimnet.space.spec.ArchSpec; torch.nn layers only)."""
    return Network(spec.blueprint())
