"""Architectures as channel spaces, by the names used on the command line."""

from __future__ import annotations

import math
from collections.abc import Sequence

from slimnet.console.errors import SlimnetError
from slimnet.space.channels import Blueprint
from slimnet.space.models import mnasnet, mobilenet_v1, mobilenet_v2, resnet
from slimnet.space.names import ARCHS

MOBILE = {"mobilenet_v1": mobilenet_v1, "mobilenet_v2": mobilenet_v2, "mnasnet": mnasnet}


def check_arch(arch: str) -> str:
    if arch not in ARCHS:
        raise SlimnetError(f"unknown architecture {arch!r}: choose one of {', '.join(ARCHS)}")
    return arch


def default_depth(arch: str) -> tuple[int, ...]:
    check_arch(arch)
    if arch.startswith("resnet"):
        return resnet.LAYOUTS[arch][1]
    return MOBILE[arch].DEFAULT_DEPTH


def depth_scalable(arch: str) -> tuple[bool, ...]:
    """Which stages a depth multiplier changes (MobileNetV2's first and last stay at one block)."""
    check_arch(arch)
    return resnet.DEPTH_SCALABLE if arch.startswith("resnet") else MOBILE[arch].DEPTH_SCALABLE


def scaled_depth(arch: str, multiplier: float) -> tuple[int, ...]:
    """Blocks per stage after a depth multiplier (stages that must stay fixed keep their count).

    A scalable stage of two or more blocks keeps at least two: stack-average fills a stage's
    missing blocks from its source blocks 1..n-1 (block 0 changes resolution or width, so it is
    not typical of the stage), which needs a block 1 to exist.
    """
    if multiplier <= 0:
        raise SlimnetError(f"depth multiplier must be positive, got {multiplier}")
    return tuple(
        max(min(2, count), math.ceil(count * multiplier - 1e-9)) if scalable else count
        for count, scalable in zip(default_depth(arch), depth_scalable(arch))
    )


def build_blueprint(
    arch: str,
    *,
    width: float = 1.0,
    depth: Sequence[int] | None = None,
    cifar: bool = False,
    in_channels: int = 3,
    num_classes: int = 1000,
    divisor: int = 8,
) -> Blueprint:
    check_arch(arch)
    if depth is not None:
        expected = len(default_depth(arch))
        if len(depth) != expected or any(int(d) < 1 for d in depth):
            raise SlimnetError(f"{arch} needs {expected} positive blocks-per-stage counts in depth, got {list(depth)}")
        depth = tuple(int(d) for d in depth)
    args = dict(width=width, depth=depth, cifar=cifar, in_channels=in_channels, num_classes=num_classes, divisor=divisor)
    if arch.startswith("resnet"):
        return resnet.blueprint(arch, **args)
    return MOBILE[arch].blueprint(**args)
