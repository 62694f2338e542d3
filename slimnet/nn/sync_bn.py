"""Batch normalization over the global batch of all ranks (resources.sync_bn).

torch's SyncBatchNorm needs a GPU and knows nothing of slimmable widths, so this is a small
autograd function of our own: one all-reduce of (sum, sum of squares, count) per channel in
the forward pass and one of (sum dy, sum dy*xhat) in the backward. The layers keep their class's
parameters and buffers (checkpoints and supernet files are unchanged); :func:`use_sync_bn`
switches existing layers to the synchronized forward.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from slimnet.nn.sliced import SlimBatchNorm2d
from slimnet.parallel.world import World

_DIMS = (0, 2, 3)


def _per_channel(v: torch.Tensor) -> torch.Tensor:
    return v.view(1, -1, 1, 1)


class _GlobalBatchNorm(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float, world: World):
        c = x.shape[1]
        # Sums in float64: E[x^2] - E[x]^2 loses precision in float32 over large batches.
        xd = x.double()
        stats = torch.cat([xd.sum(_DIMS), (xd * xd).sum(_DIMS), xd.new_tensor([x.numel() // c])])
        world.all_reduce_sum(stats)
        count = stats[-1]
        mean = stats[:c] / count
        var = (stats[c : 2 * c] / count - mean * mean).clamp_min(0)
        invstd = torch.rsqrt(var + eps).to(x.dtype)
        xhat = (x - _per_channel(mean.to(x.dtype))) * _per_channel(invstd)
        ctx.save_for_backward(xhat, weight, invstd)
        ctx.count, ctx.world = float(count), world
        unbiased = var * count / max(float(count) - 1, 1.0)  # what running statistics average
        ctx.mark_non_differentiable(mean, unbiased)
        return xhat * _per_channel(weight) + _per_channel(bias), mean, unbiased

    @staticmethod
    def backward(ctx, dy: torch.Tensor, _mean: torch.Tensor, _var: torch.Tensor):
        xhat, weight, invstd = ctx.saved_tensors
        c = dy.shape[1]
        # Weight and bias gradients stay local: GradientReducer sums them with all the others.
        sum_dy = dy.sum(_DIMS)
        sum_dy_xhat = (dy * xhat).sum(_DIMS)
        total = ctx.world.all_reduce_sum(torch.cat([sum_dy, sum_dy_xhat]))
        mean_dy, mean_dy_xhat = total[:c] / ctx.count, total[c:] / ctx.count
        dx = _per_channel(weight * invstd) * (dy - _per_channel(mean_dy) - xhat * _per_channel(mean_dy_xhat))
        return dx, sum_dy_xhat, sum_dy, None, None


def global_batch_norm(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float, world: World
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Normalized ``x`` and the global batch's mean and unbiased variance per channel."""
    return _GlobalBatchNorm.apply(x, weight, bias, eps, world)


class SyncSlimBatchNorm2d(SlimBatchNorm2d):
    """Slimmable BN whose training forward normalizes with the global batch's statistics
    (calibration and eval keep the per-process path: every rank calibrates on the same images)."""

    world: World | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.world is None or not self.training or self.calibrating:
            return super().forward(x)
        c = x.shape[1]
        return global_batch_norm(x, self.weight[:c], self.bias[:c], self.eps, self.world)[0]


class SyncBatchNorm2d(nn.BatchNorm2d):
    """Plain BN with global-batch statistics in training, running statistics updated from them."""

    world: World | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.world is None or not self.training or self.momentum is None:
            # momentum None: a cumulative re-estimate (bn.recalibrate_plain), done alike on every rank.
            return super().forward(x)
        out, mean, var = global_batch_norm(x, self.weight, self.bias, self.eps, self.world)
        with torch.no_grad():
            self.running_mean.lerp_(mean.to(self.running_mean.dtype), self.momentum)
            self.running_var.lerp_(var.to(self.running_var.dtype), self.momentum)
            self.num_batches_tracked += 1
        return out


def use_sync_bn(model: nn.Module, world: World) -> nn.Module:
    """Switch every BN layer of ``model`` to global-batch statistics (no-op in a world of one)."""
    if world.size == 1:
        return model
    for module in model.modules():
        if type(module) is SlimBatchNorm2d:
            module.__class__ = SyncSlimBatchNorm2d
        elif type(module) is nn.BatchNorm2d:
            module.__class__ = SyncBatchNorm2d
        if isinstance(module, (SyncSlimBatchNorm2d, SyncBatchNorm2d)):
            module.world = world
    return model


@contextmanager
def local_bn(model: nn.Module) -> Iterator[None]:
    """Per-process BN for a while (e.g. a BN re-estimate every rank runs on the same images)."""
    layers = [m for m in model.modules() if isinstance(m, (SyncSlimBatchNorm2d, SyncBatchNorm2d))]
    saved = [m.world for m in layers]
    for m in layers:
        m.world = None
    try:
        yield
    finally:
        for m, world in zip(layers, saved):
            m.world = world
