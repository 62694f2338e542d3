"""The two uniform networks every cost ratio is taken against: the full one and its projection,
and the check that params mean something for them (check_network)."""

from __future__ import annotations

import json

from slimnet.config import ModelParams, Params, SupernetParams, TransferParams
from slimnet.console.errors import SlimnetError
from slimnet.pipeline.data_paths import DATA
from slimnet.space.channels import make_divisible
from slimnet.space.limits import has_choices, smallest_max_width, total_stride
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


# A network's units and strides do not depend on its input's size, channels or classes, so the
# check builds it with these before any data is read.
_ANY_INPUT = {"resolution": 1, "search_resolution": 1, "num_classes": 10, "in_channels": 3}


def dataset_resolution() -> int | None:
    """The full problem's input size from data/meta.json once the data stage wrote it (what a
    null data.resolution stands for), else None."""
    path = DATA / "meta.json"
    return int(json.loads(path.read_text())["resolution"]) if path.is_file() else None


def check_network(p: Params, full_resolution: int | None = None) -> None:
    """Fail, in one line naming the key and the smallest sensible value, on params that are valid
    numbers but meaningless for ``p.model``'s network: an input below its total stride (the full
    problem's or the projected one's), a projected depth that leaves a stage with no block, a
    supernet width range that rounds every unit to one width. Stages call it before any work.

    ``full_resolution``: the dataset's own size, what a null data.resolution means (None: not known yet).
    """
    model, transfer, supernet = p.model, p.transfer, p.supernet
    network = f"{model.arch}{' (CIFAR variant)' if model.cifar else ''}"
    stride = total_stride(full_uniform(model, _ANY_INPUT).blueprint())
    resolution = p.data.resolution or full_resolution
    if resolution is not None and resolution < stride:
        given = p.data.resolution if p.data.resolution is not None else f"null (the dataset's own {resolution} px)"
        raise SlimnetError(
            f"data.resolution: {given} is below the total stride {stride} of {network} (its strides would shrink "
            f"the image below one pixel): set data.resolution >= {stride}"
        )

    # scaled_depth keeps min(2, n) blocks of a stage of n today, so this guards its future changes.
    empty = [stage for stage, count in enumerate(scaled_depth(model.arch, transfer.depth)) if count < 1]
    if empty:
        needed = next(m / 100 for m in range(1, 101) if min(scaled_depth(model.arch, m / 100)) >= 1)
        raise SlimnetError(
            f"transfer.depth: {transfer.depth:g} leaves stage {empty[0]} of {network} with no block: set transfer.depth >= {needed:g}"
        )

    projected = projected_uniform(model, transfer, supernet, _ANY_INPUT).blueprint()
    stride = total_stride(projected)
    if transfer.resolution is not None and transfer.resolution < stride:
        raise SlimnetError(
            f"transfer.resolution: {transfer.resolution} is below the total stride {stride} of the projected {network} "
            f"(its strides would shrink the image below one pixel): set transfer.resolution >= {stride}"
        )

    if not has_choices(projected, supernet.min_width, supernet.max_width, supernet.groups, supernet.divisor):
        smallest = smallest_max_width(projected, supernet.min_width, supernet.groups, supernet.divisor)
        raise SlimnetError(
            f"supernet.max_width: {supernet.max_width:g} (min_width {supernet.min_width:g}, divisor {supernet.divisor}) rounds "
            f"every unit of the projected {network} to one width, leaving the search nothing to choose: "
            f"set supernet.max_width >= {smallest:g} (or lower supernet.min_width or supernet.divisor)"
        )
