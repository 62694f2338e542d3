"""Import the official AutoSlim release's flat channel lists into arch specs."""

from __future__ import annotations

from collections.abc import Sequence

from slimnet.console.errors import SlimnetError
from slimnet.space.models import default_depth, mobilenet_v1, mobilenet_v2, resnet
from slimnet.space.spec import ArchSpec, check_channels

FORMATS = {
    "mobilenet_v2": "[stem, block0-out, (expand, out) for each of the 16 later blocks, last conv, classes]",
    "mobilenet_v1": "[stem, 13 separable outputs, classes]",
    "resnet50": "[stem, then per stage: stage-out, (1x1-mid, 3x3-mid, out) per block, classes]",
}


def parse_channel_list(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.replace("[", "").replace("]", "").replace(" ", "").split(",") if part]
    except ValueError:
        raise SlimnetError(f"--channels must be comma-separated whole numbers, got {text!r}") from None
    if any(v < 1 for v in values):
        raise SlimnetError("--channels: every channel count must be positive")
    return values


def import_autoslim(
    arch: str, values: Sequence[int], *, resolution: int = 224, in_channels: int = 3, cifar: bool = False
) -> ArchSpec:
    if arch not in FORMATS:
        raise SlimnetError(f"no published AutoSlim list format for {arch!r}: choose one of {', '.join(FORMATS)}")
    depth = default_depth(arch)
    module = {"mobilenet_v2": mobilenet_v2, "mobilenet_v1": mobilenet_v1, "resnet50": resnet}[arch]
    expected = module.autoslim_list_length(depth)
    if len(values) != expected:
        raise SlimnetError(f"{arch} lists have {expected} numbers {FORMATS[arch]}, got {len(values)}")
    try:
        channels = module.from_autoslim_list(values, depth)
    except ValueError as error:
        raise SlimnetError(f"{arch} list breaks residual coupling: {error}") from None
    spec = ArchSpec(
        arch=arch,
        resolution=resolution,
        in_channels=in_channels,
        num_classes=values[-1],
        cifar=cifar,
        depth=depth,
        channels=channels,
        note="published AutoSlim channels",
    )
    return check_channels(spec)
