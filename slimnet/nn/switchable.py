"""One network, several widths, a private BatchNorm per width (switchable BN, Slimmable
Networks, Yu et al. 2019): convolutions and the classifier are shared by prefix slicing, while
each width keeps its own BN statistics and affine terms, because the mean and variance of a
channel differ with how many channels feed it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from slimnet.nn.bn import recalibrate_plain
from slimnet.nn.network import Network
from slimnet.nn.sliced import SlimBatchNorm2d, SlimConv2d
from slimnet.space.spec import ArchSpec


class SwitchableBatchNorm2d(nn.Module):
    """``len(widths)`` plain BNs; the network's shared ``state["index"]`` picks the active one."""

    def __init__(self, widths: Sequence[int], state: dict[str, int]):
        super().__init__()
        self.bns = nn.ModuleList(nn.BatchNorm2d(c) for c in widths)
        self.state = state

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bns[self.state["index"]](x)


class SlimmableNetwork(nn.Module):
    """The networks of ``specs`` (same architecture and depth, any channels) as one set of weights.

    Weights are sized to the per-unit maximum over the specs; width ``i`` uses the first
    ``specs[i].channels[unit]`` channels of every unit and its own BNs. :meth:`switch` selects it.
    """

    def __init__(self, specs: Sequence[ArchSpec]):
        super().__init__()
        if not specs:
            raise ValueError("a slimmable network needs at least one width")
        first = specs[0]
        for spec in specs[1:]:
            if (spec.arch, spec.depth, spec.cifar, spec.in_channels, spec.num_classes) != (
                first.arch,
                first.depth,
                first.cifar,
                first.in_channels,
                first.num_classes,
            ):
                raise ValueError("every width of a slimmable network must share arch, depth, input and classes")
        self.specs = list(specs)
        self.widths = [dict(spec.channels) for spec in specs]
        maximum = {unit: max(width[unit] for width in self.widths) for unit in first.channels}
        self.net = Network(first.blueprint(), maximum, slimmable=True)
        self.state = {"index": 0}
        _switchable_bns(self.net, self.widths, self.state)
        self.switch(0)

    def switch(self, index: int) -> None:
        self.state["index"] = index
        self.net.set_channels(self.widths[index])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def switchable_bns(self) -> list[SwitchableBatchNorm2d]:
        return [m for m in self.modules() if isinstance(m, SwitchableBatchNorm2d)]

    def plain(self, index: int) -> Network:
        """Width ``index`` as a plain static network (its slices of the shared weights, its BNs)."""
        plain = Network(self.specs[index].blueprint())
        source = self.net.state_dict()
        state = {}
        for name, target in plain.state_dict().items():
            module, leaf = name.rsplit(".", 1)
            private = f"{module}.bns.{index}.{leaf}"
            tensor = source[private] if private in source else source[name]
            if tensor.dim() > 0:
                tensor = tensor[tuple(slice(0, n) for n in target.shape)]
            state[name] = tensor.detach().clone()
        plain.load_state_dict(state)
        return plain.eval()


def _switchable_bns(network: Network, widths: list[dict[str, int]], state: dict[str, int]) -> None:
    """Replace each shared BN by a switchable one sized, per width, to the conv before it."""
    for parent in list(network.modules()):
        names = list(parent._modules)
        for first, second in zip(names, names[1:]):
            conv, bn = parent._modules[first], parent._modules[second]
            if isinstance(conv, SlimConv2d) and isinstance(bn, SlimBatchNorm2d):
                parent._modules[second] = SwitchableBatchNorm2d([width[conv.unit] for width in widths], state)
    left = [name for name, m in network.named_modules() if isinstance(m, SlimBatchNorm2d)]
    if left:
        raise ValueError(f"BN without a conv before it: {', '.join(left[:3])}")


def recalibrate_width(model: SlimmableNetwork, index: int, batches) -> None:
    """Exact (cumulative-average) statistics of width ``index``'s own BNs; other widths' untouched."""
    model.switch(index)
    recalibrate_plain(model, batches, [m.bns[index] for m in model.switchable_bns()])
