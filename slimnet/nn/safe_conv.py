"""Convolution that steers clear of a CPU bug in torch 2.14.1's oneDNN convolution.

The weight gradient of a 1x1 convolution with stride > 1, 2 to 7 input channels and a
channels-last input corrupts the heap with one thread (``double free or corruption``,
``free(): invalid next size``, segfaults) and comes out silently wrong with several; it
shows where the stride divides the spatial size. Forward, input gradient, NCHW inputs,
3x3 kernels, stride 1, and 1 or >= 8 input channels are fine. ResNet's downsampling
shortcut at narrow widths is exactly that layer. Such convolutions run here as a strided
subsample plus a matmul over channels (same result, still channels-last); everything else
goes to ``F.conv2d`` unchanged. Remove the route once torch ships a fixed oneDNN.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# oneDNN is fine from 8 input channels up; 1 is fine too, but routing it costs nothing.
_MAX_BUGGY_CIN = 7
# Not narrowed further (input layout, spatial size): the check stays simple and the route is cheap.


def _pair(value: int | tuple[int, ...]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[-1]))


def _zero_padding(padding: int | str | tuple[int, ...]) -> bool:
    return padding == "valid" if isinstance(padding, str) else _pair(padding) == (0, 0)


def hits_onednn_bug(
    x: torch.Tensor,
    weight: torch.Tensor,
    stride: int | tuple[int, ...],
    padding: int | str | tuple[int, ...],
    groups: int,
) -> bool:
    """Whether ``F.conv2d`` would run the broken oneDNN 1x1 strided backward on these arguments."""
    if x.device.type != "cpu" or groups != 1 or weight.shape[-2:] != (1, 1) or weight.shape[1] > _MAX_BUGGY_CIN:
        return False
    if not _zero_padding(padding) or max(_pair(stride)) == 1:
        return False
    # Only the weight gradient is broken: inference and frozen weights keep oneDNN.
    if not (torch.is_grad_enabled() and weight.requires_grad):
        return False
    return torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled


def pointwise_conv(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, stride: int | tuple[int, ...]
) -> torch.Tensor:
    """A 1x1 convolution without padding as subsample + matmul over channels (N, H, W, C view)."""
    sh, sw = _pair(stride)
    channels_last = x.is_contiguous(memory_format=torch.channels_last)
    x = x[:, :, ::sh, ::sw]
    out = F.linear(x.permute(0, 2, 3, 1), weight.flatten(1), bias).permute(0, 3, 1, 2)
    # The permuted result is channels-last already; match F.conv2d's layout for NCHW inputs.
    return out if channels_last else out.contiguous()


def conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: int | tuple[int, ...] = 1,
    padding: int | str | tuple[int, ...] = 0,
    dilation: int | tuple[int, ...] = 1,
    groups: int = 1,
) -> torch.Tensor:
    """``F.conv2d``, except where the torch 2.14.1 oneDNN bug would hit (see module docstring)."""
    if hits_onednn_bug(x, weight, stride, padding, groups):
        return pointwise_conv(x, weight, bias, stride)
    return F.conv2d(x, weight, bias, stride, padding, dilation, groups)


class Conv2d(nn.Conv2d):
    """``nn.Conv2d`` (same parameters and state_dict keys) that runs through :func:`conv2d`."""

    def _conv_forward(self, input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        if self.padding_mode != "zeros":
            return super()._conv_forward(input, weight, bias)
        return conv2d(input, weight, bias, self.stride, self.padding, self.dilation, self.groups)
