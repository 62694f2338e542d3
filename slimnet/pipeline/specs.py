"""The two uniform networks every cost ratio is taken against: the full one and its projection."""

from __future__ import annotations

from slimnet.config import ModelParams, SupernetParams, TransferParams
from slimnet.space.channels import make_divisible
from slimnet.space.models import scaled_depth
from slimnet.space.spec import ArchSpec, uniform_spec


def full_uniform(model: ModelParams, meta: dict) -> ArchSpec:
    """The default network at ``model.width``: the 1.0x reference of every cost ratio."""
    return uniform_spec(
        model.arch,
        model.width,
        resolution=meta["resolution"],
        num_classes=meta["num_classes"],
        in_channels=meta["in_channels"],
        cifar=model.cifar,
        divisor=model.divisor,
    )


def projected_uniform(model: ModelParams, transfer_params: TransferParams, supernet: SupernetParams, meta: dict) -> ArchSpec:
    """The narrower, shallower, lower-resolution network the supernet is built around.

    Every unit is the full network's (at the projected depth) times ``transfer.width``: width
    transfer shrinks all layers alike. The architecture's own width multiplier would not do it:
    MobileNetV2 keeps its 1280-channel last conv below 1.0x, which made the last conv and the
    classifier ~31% of the projected network's FLOPs against ~18% of the full one's.
    """
    at_depth = uniform_spec(
        model.arch,
        model.width,
        resolution=meta["search_resolution"],
        num_classes=meta["num_classes"],
        in_channels=meta["in_channels"],
        cifar=model.cifar,
        depth=scaled_depth(model.arch, transfer_params.depth),
        divisor=model.divisor,
    )
    channels = {
        unit: make_divisible(count * transfer_params.width, supernet.divisor) for unit, count in at_depth.channels.items()
    }
    return at_depth.with_channels(channels, note=f"projected: {transfer_params.width:g}x of uniform {model.width:g}x")
