"""Architecture specs: the JSON currency between stages (arch, input, depth, channels per unit)."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from slimnet import atomic
from slimnet.console.errors import SlimnetError
from slimnet.console.validation import first_problem
from slimnet.space.channels import Blueprint
from slimnet.space.flops import Cost, cost
from slimnet.space.models import ARCHS, build_blueprint, default_depth


class ArchSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    arch: str
    resolution: int
    in_channels: int = 3
    num_classes: int
    cifar: bool = False
    depth: tuple[int, ...]
    channels: dict[str, int]
    note: str = ""

    @field_validator("arch")
    @classmethod
    def _known_arch(cls, value: str) -> str:
        if value not in ARCHS:
            raise ValueError(f"unknown architecture, choose one of {', '.join(ARCHS)}")
        return value

    @field_validator("resolution", "in_channels", "num_classes")
    @classmethod
    def _positive(cls, value: int) -> int:
        if value < 1:
            raise ValueError("must be positive")
        return value

    def blueprint(self) -> Blueprint:
        """The topology with this spec's channels as the units' widths."""
        blueprint = build_blueprint(
            self.arch, depth=self.depth, cifar=self.cifar, in_channels=self.in_channels, num_classes=self.num_classes
        )
        if set(self.channels) != set(blueprint.units):
            raise SlimnetError(f"spec channels do not name the units of {self.arch} at depth {list(self.depth)}")
        blueprint.units = {u: self.channels[u] for u in blueprint.units}
        return blueprint

    def cost(self) -> Cost:
        return cost(self.blueprint(), self.channels, self.resolution)

    def with_channels(self, channels: dict[str, int], note: str = "") -> "ArchSpec":
        return self.model_copy(update={"channels": dict(channels), "note": note})


def check_channels(spec: ArchSpec, maximum: dict[str, int] | None = None) -> ArchSpec:
    """Unit names must be exactly the architecture's; counts positive (and within ``maximum``)."""
    try:
        expected = list(build_blueprint(spec.arch, depth=spec.depth, cifar=spec.cifar).units)
    except SlimnetError as error:
        raise SlimnetError(f"spec depth: {error}") from None
    missing = [u for u in expected if u not in spec.channels]
    extra = [u for u in spec.channels if u not in expected]
    if missing:
        raise SlimnetError(f"spec channels: missing unit(s) {', '.join(missing[:5])} for {spec.arch} at depth {list(spec.depth)}")
    if extra:
        raise SlimnetError(f"spec channels: unknown unit(s) {', '.join(extra[:5])} for {spec.arch} at depth {list(spec.depth)}")
    for unit, value in spec.channels.items():
        if value < 1:
            raise SlimnetError(f"spec channels.{unit}: must be a positive channel count, got {value}")
        if maximum is not None and value > maximum[unit]:
            raise SlimnetError(f"spec channels.{unit}: {value} is above the supernet maximum {maximum[unit]}")
    # Keep the architecture's unit order so files and tables read top to bottom.
    return spec.model_copy(update={"channels": {u: spec.channels[u] for u in expected}})


def load_spec(path: Path) -> ArchSpec:
    path = Path(path)
    if not path.is_file():
        raise SlimnetError(f"arch spec {path} not found: write one with `python -m slimnet arch uniform ... --out {path}`")
    try:
        raw = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise SlimnetError(f"arch spec {path} is not valid JSON: {error.msg} at line {error.lineno}") from None
    try:
        spec = ArchSpec.model_validate(raw)
    except ValidationError as error:
        raise SlimnetError(f"arch spec {path}: {first_problem(error)}") from None
    return check_channels(spec)


def save_spec(spec: ArchSpec, path: Path) -> None:
    atomic.write_json(path, spec.model_dump(mode="json"))


def uniform_spec(
    arch: str,
    width: float,
    *,
    resolution: int,
    num_classes: int,
    in_channels: int = 3,
    cifar: bool = False,
    depth: tuple[int, ...] | None = None,
    divisor: int = 8,
) -> ArchSpec:
    """The architecture's default channels times one width multiplier."""
    if width <= 0:
        raise SlimnetError(f"width multiplier must be positive, got {width}")
    depth = tuple(default_depth(arch) if depth is None else depth)
    blueprint = build_blueprint(
        arch, width=width, depth=depth, cifar=cifar, in_channels=in_channels, num_classes=num_classes, divisor=divisor
    )
    return ArchSpec(
        arch=arch,
        resolution=resolution,
        in_channels=in_channels,
        num_classes=num_classes,
        cifar=cifar,
        depth=depth,
        channels=dict(blueprint.units),
        note=f"uniform {width:g}x",
    )
