"""The presets in presets/ and what each one's network costs, so that a budget far above the
configured network's can name a preset that makes it meaningful."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from slimnet.config import load_params
from slimnet.console.errors import SlimnetError
from slimnet.space.spec import uniform_spec

PRESETS = Path("presets")
# What a preset's dataset gives the network; an image-folder preset is an ImageNet one.
DATASETS = {"fashion-mnist": (1, 28, 10), "cifar10": (3, 32, 10), "cifar100": (3, 32, 100), "imagefolder": (3, None, 1000)}


@dataclass(frozen=True)
class Preset:
    path: str
    network: str  # e.g. "mobilenet_v2 1.0x at 224 px"
    costs: dict[str, float]  # flops, params, memory of the uniform network at model.width


def network_name(arch: str, width: float, resolution: int) -> str:
    return f"{arch} {width:g}x at {resolution} px"


def presets(directory: Path = PRESETS) -> list[Preset]:
    """Every preset that loads, with its network's costs (a broken preset is left out: this only feeds a hint)."""
    found = []
    for path in sorted(directory.glob("*.yaml")):
        try:
            p = load_params(path)
        except SlimnetError:
            continue
        in_channels, resolution, classes = DATASETS[p.data.source]
        resolution = p.data.resolution or resolution
        spec = uniform_spec(
            p.model.arch,
            p.model.width,
            resolution=resolution,
            num_classes=classes,
            in_channels=in_channels,
            cifar=p.model.cifar,
            divisor=p.model.divisor,
        )
        c = spec.cost()
        found.append(
            Preset(
                str(path),
                network_name(p.model.arch, p.model.width, resolution),
                {"flops": c.flops, "params": c.params, "memory": c.memory},
            )
        )
    return found


def closest(metric: str, target: float, candidates: list[Preset], within: float = 4.0) -> list[Preset]:
    """The presets whose network costs within ``within``x of ``target`` on ``metric``, closest first."""
    scored = [(abs(math.log(p.costs[metric] / target)), p) for p in candidates if metric in p.costs]
    return [p for distance, p in sorted(scored, key=lambda s: s[0]) if distance <= math.log(within)]
