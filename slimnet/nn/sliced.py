"""Layers that run at any width by prefix-slicing one set of shared weights.

Every layer reads its active output width from a dict shared by the whole network
(unit name -> channels), so switching configuration is one dict update, no copies. The
input width is whatever the incoming tensor has.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from slimnet.nn.safe_conv import conv2d


class SlimConv2d(nn.Conv2d):
    def __init__(
        self, in_channels: int, out_channels: int, kernel: int, stride: int, depthwise: bool, unit: str, active: dict[str, int]
    ):
        groups = in_channels if depthwise else 1
        super().__init__(in_channels, out_channels, kernel, stride, kernel // 2, groups=groups, bias=False)
        self.unit, self.active, self.depthwise = unit, active, depthwise

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cin = x.shape[1]
        if self.depthwise:
            return F.conv2d(x, self.weight[:cin], None, self.stride, self.padding, 1, cin)
        cout = self.active[self.unit]
        return conv2d(x, self.weight[:cout, :cin], None, self.stride, self.padding)


class SlimBatchNorm2d(nn.BatchNorm2d):
    """BN shared across widths. Training uses batch statistics only (running statistics of a
    sampled width mean nothing); :func:`slimnet.nn.bn.recalibrate` fills them per sub-network."""

    def __init__(self, channels: int):
        super().__init__(channels)
        self.calibrating = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        weight, bias = self.weight[:c], self.bias[:c]
        if self.calibrating:
            # Cumulative average over calibration batches: the views update the buffers in place.
            self.num_batches_tracked += 1
            momentum = 1.0 / float(self.num_batches_tracked)
            return F.batch_norm(x, self.running_mean[:c], self.running_var[:c], weight, bias, True, momentum, self.eps)
        if self.training:
            return F.batch_norm(x, None, None, weight, bias, True, 0.0, self.eps)
        return F.batch_norm(x, self.running_mean[:c], self.running_var[:c], weight, bias, False, 0.0, self.eps)


class SlimLinear(nn.Linear):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight[:, : x.shape[1]], self.bias)
