"""The two uniform networks every cost ratio is taken against: the full one and its projection."""

from __future__ import annotations

from slimnet.arch import ArchSpec, uniform_spec
from slimnet.config import ModelParams, SupernetParams, TransferParams
from slimnet.models import scaled_depth


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
    """The narrower, shallower, lower-resolution network the supernet is built around."""
    return uniform_spec(
        model.arch,
        model.width * transfer_params.width,
        resolution=meta["search_resolution"],
        num_classes=meta["num_classes"],
        in_channels=meta["in_channels"],
        cifar=model.cifar,
        depth=scaled_depth(model.arch, transfer_params.depth),
        divisor=supernet.divisor,
    )
