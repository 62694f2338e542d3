"""BatchNorm folded into the convolution before it: the network a runtime should execute.

In eval mode BN is an affine map per channel, y = (x - mean) / sqrt(var + eps) * gamma + beta,
so conv followed by BN equals one conv with scaled weights and a bias. Folding removes every BN
node from an exported graph (one op less per layer, and no running statistics to ship).
"""

from __future__ import annotations

import copy

import torch
from torch import nn


def folded_conv(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """One plain ``nn.Conv2d`` (with bias) computing ``bn(conv(x))`` in eval mode."""
    scale = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)
    fused = nn.Conv2d(
        conv.in_channels,
        conv.out_channels,
        conv.kernel_size,
        conv.stride,
        conv.padding,
        conv.dilation,
        conv.groups,
        bias=True,
    )
    bias = conv.bias.detach() if conv.bias is not None else torch.zeros_like(bn.running_mean)
    with torch.no_grad():
        fused.weight.copy_(conv.weight.detach() * scale.reshape(-1, 1, 1, 1))
        fused.bias.copy_((bias - bn.running_mean) * scale + bn.bias.detach())
    return fused


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """A copy of ``model`` in eval mode with every (Conv2d, BatchNorm2d) pair fused, dropout gone.

    Pairs are adjacent children of one container (slimnet's ConvBNAct and shortcut
    Sequentials). A BN that follows no conv is an error, not silently kept: the exported
    graph is promised to be BN-free.
    """
    folded = copy.deepcopy(model).cpu().float().eval()
    for parent in list(folded.modules()):
        names = list(parent._modules)
        for first, second in zip(names, names[1:]):
            conv, bn = parent._modules[first], parent._modules[second]
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                parent._modules[first] = folded_conv(conv, bn)
                parent._modules[second] = nn.Identity()
        for name, child in parent._modules.items():
            if isinstance(child, nn.Dropout):
                parent._modules[name] = nn.Identity()  # a no-op in eval mode; keeps the graph clean
    leftover = [name for name, m in folded.named_modules() if isinstance(m, nn.BatchNorm2d)]
    if leftover:
        raise ValueError(f"BatchNorm without a preceding conv cannot be folded: {', '.join(leftover[:3])}")
    return folded
