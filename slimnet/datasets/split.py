"""Class-balanced index arithmetic and uint8 image-tensor operations for preparing splits."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from slimnet.console.errors import SlimnetError

# Bounds the float working set when resizing (elements per chunk).
CHUNK_ELEMENTS = 1 << 23


def _fraction_count(n: int, fraction: float) -> int:
    return math.floor(n * fraction + 0.5)


def split_train_val(labels: Tensor, val_fraction: float, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Class-balanced split of indices: `val_fraction` of every class goes to val."""
    train_parts, val_parts = [], []
    for c in range(int(labels.max()) + 1):
        idx = (labels == c).nonzero().flatten()
        if len(idx) == 0:
            continue
        if len(idx) < 2:
            raise SlimnetError(f"class {c} has {len(idx)} training image; each class needs at least 2 to hold out a val split")
        n_val = min(max(_fraction_count(len(idx), val_fraction), 1), len(idx) - 1)
        idx = idx[torch.randperm(len(idx), generator=generator)]
        val_parts.append(idx[:n_val])
        train_parts.append(idx[n_val:])
    # Sorted indices keep files in source order, which is easier to inspect and diff.
    return torch.cat(train_parts).sort().values, torch.cat(val_parts).sort().values


def balanced_subset(labels: Tensor, fraction: float, generator: torch.Generator) -> Tensor:
    """Positions of a per-class proportional sample (at least one per present class)."""
    parts = []
    for c in range(int(labels.max()) + 1):
        idx = (labels == c).nonzero().flatten()
        if len(idx) == 0:
            continue
        n = min(max(_fraction_count(len(idx), fraction), 1), len(idx))
        parts.append(idx[torch.randperm(len(idx), generator=generator)[:n]])
    return torch.cat(parts).sort().values


def _chunk_rows(images: Tensor) -> int:
    per_image = max(1, images[0].numel())
    return max(1, CHUNK_ELEMENTS // per_image)


def resize_uint8(images: Tensor, resolution: int | None) -> Tensor:
    """Antialiased bilinear resize of a uint8 NCHW batch to a square `resolution`."""
    if resolution is None or tuple(images.shape[-2:]) == (resolution, resolution):
        return images
    out = [
        F.interpolate(chunk.float(), size=(resolution, resolution), mode="bilinear", antialias=True, align_corners=False)
        .round_()
        .clamp_(0, 255)
        .to(torch.uint8)
        for chunk in images.split(_chunk_rows(images))
    ]
    return torch.cat(out)


def channel_stats(images: Tensor) -> tuple[list[float], list[float]]:
    """Per-channel mean and std in [0, 1] units.

    A 256-bin histogram per channel is exact for uint8 and much faster on the CPU than
    reducing the whole tensor in floating point.
    """
    channels = images.shape[1]
    hist = torch.stack([torch.bincount(images[:, c].flatten(), minlength=256).double() for c in range(channels)])
    values = torch.arange(256, dtype=torch.float64) / 255.0
    count = hist.sum(dim=1)
    mean = (hist * values).sum(dim=1) / count
    mean_square = (hist * values.square()).sum(dim=1) / count
    std = (mean_square - mean.square()).clamp_min(1e-12).sqrt()
    return mean.tolist(), std.tolist()
