"""The searchable units of a network and the topology that refers to them.

A *unit* is one searchable channel count. Every convolution names the unit of its output;
layers coupled by a residual add share one unit, and a depthwise convolution follows its
input. A :class:`Blueprint` is an architecture's topology as a list of block descriptors
whose channel counts are unit names, so the same description drives the slimmable
supernet, the plain network, and the analytic cost model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Activation = Literal["relu", "relu6", None]


def make_divisible(value: float, divisor: int, min_value: int | None = None) -> int:
    """Round to the nearest multiple of ``divisor``, never more than 10% below ``value``."""
    min_value = divisor if min_value is None else min_value
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


@dataclass(frozen=True)
class Conv:
    """One convolution (+BN, +activation) whose output width is ``out_unit``."""

    name: str
    in_unit: str
    out_unit: str
    kernel: int
    stride: int = 1
    depthwise: bool = False
    act: Activation = "relu"


@dataclass(frozen=True)
class Block:
    """A sequence of convolutions with an optional residual path.

    ``residual`` is "identity" (add the block input), "project" (add a strided 1x1 conv +
    BN of the input: ResNet's downsample, whose output unit is the block's output unit) or
    None; ``post_act`` follows the add. ``pool`` is a 3x3/2 max-pool after the convs (the ResNet ImageNet stem).
    """

    name: str
    convs: tuple[Conv, ...]
    residual: Literal["identity", "project", None] = None
    post_act: Activation = None  # after the residual add (ResNet)
    pool: bool = False

    @property
    def in_unit(self) -> str:
        return self.convs[0].in_unit

    @property
    def out_unit(self) -> str:
        return self.convs[-1].out_unit

    @property
    def stride(self) -> int:
        stride = 1
        for conv in self.convs:
            stride *= conv.stride
        return stride * (2 if self.pool else 1)

    def units(self) -> list[str]:
        """Every unit whose width changes something inside this block."""
        names: list[str] = []
        for unit in [self.in_unit] + [c.out_unit for c in self.convs]:
            if unit not in names:
                names.append(unit)
        return names


@dataclass(frozen=True)
class Unit:
    name: str
    channels: int  # the width of this unit in the network the blueprint describes


@dataclass
class Blueprint:
    """An architecture at one depth, with the default channel count of each unit."""

    arch: str
    in_channels: int
    num_classes: int
    depth: tuple[int, ...]
    blocks: list[Block]
    units: dict[str, int] = field(default_factory=dict)  # unit -> default channels
    stages: list[list[int]] = field(default_factory=list)  # block indices per depth stage
    dropout: float = 0.0
    input_unit: str = "input"

    @property
    def last_unit(self) -> str:
        return self.blocks[-1].out_unit

    def unit_names(self) -> list[str]:
        return list(self.units)

    def first_block_of(self) -> dict[str, int]:
        """For each unit, the index of the first block whose computation it changes."""
        first: dict[str, int] = {}
        for index, block in enumerate(self.blocks):
            for unit in block.units():
                if unit in self.units:
                    first.setdefault(unit, index)
        return first


def unit_choices(max_channels: int, groups: int, divisor: int, min_channels: int | None = None) -> list[int]:
    """The channel counts a unit may take: ``groups`` even steps up to ``max_channels``.

    Steps are rounded to ``divisor`` and de-duplicated; the smallest is one group (or
    ``min_channels`` when the supernet's lower bound is set explicitly).
    """
    if max_channels < 1 or groups < 1:
        raise ValueError("max_channels and groups must be positive")
    low = max_channels / groups if min_channels is None else float(min_channels)
    if groups == 1:
        steps = [float(max_channels)]
    else:
        steps = [low + (max_channels - low) * g / (groups - 1) for g in range(groups)]
    choices: list[int] = []
    for value in steps:
        rounded = max(divisor, int(round(value / divisor)) * divisor) if divisor > 1 else max(1, int(round(value)))
        rounded = min(rounded, max_channels)
        if rounded not in choices:
            choices.append(rounded)
    if choices[-1] != max_channels:
        choices.append(max_channels)
    return sorted(set(choices))


def round_to(value: float, divisor: int) -> int:
    return max(divisor, int(round(value / divisor)) * divisor)


@dataclass
class ChannelSpace:
    """The configurations a supernet can run: a blueprint and each unit's sorted choices."""

    blueprint: Blueprint
    choices: dict[str, list[int]]

    @classmethod
    def around(cls, blueprint: Blueprint, min_width: float, max_width: float, groups: int, divisor: int) -> "ChannelSpace":
        """Units range over [min_width, max_width] times the blueprint's channels in ``groups`` steps."""
        choices = {}
        for unit, base in blueprint.units.items():
            top = round_to(base * max_width, divisor)
            bottom = min(top, round_to(base * min_width, divisor))
            choices[unit] = unit_choices(top, groups, divisor, min_channels=bottom)
        return cls(blueprint, choices)

    @property
    def maximum(self) -> dict[str, int]:
        return {u: c[-1] for u, c in self.choices.items()}

    @property
    def minimum(self) -> dict[str, int]:
        return {u: c[0] for u, c in self.choices.items()}

    def shared_units(self) -> list[str]:
        """Units on a residual path (drawn first when sampling, as AutoSlim does)."""
        return [u for u in self.choices if any(b.residual and b.out_unit == u for b in self.blueprint.blocks)]

    def sample(self, generator) -> dict[str, int]:
        import torch

        order = self.shared_units() + [u for u in self.choices if u not in self.shared_units()]
        config = {}
        for unit in order:
            options = self.choices[unit]
            config[unit] = options[int(torch.randint(len(options), (1,), generator=generator))]
        return {u: config[u] for u in self.choices}

    def smaller(self, config: dict[str, int], unit: str) -> int | None:
        """The next choice below the unit's current width, or None at its minimum."""
        options = self.choices[unit]
        index = options.index(config[unit])
        return options[index - 1] if index > 0 else None

    def problems(self, config: dict[str, int]) -> str | None:
        missing = [u for u in self.choices if u not in config]
        if missing:
            return f"missing unit {missing[0]}"
        for unit, value in config.items():
            if unit not in self.choices:
                return f"unknown unit {unit}"
            if value not in self.choices[unit]:
                return f"unit {unit} has {value} channels, not one of its choices {self.choices[unit]}"
        return None
