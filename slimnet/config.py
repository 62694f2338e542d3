"""params.yaml, validated: one pydantic model per section, sizes written as "200M" or "1.5G".

Only the CLI reads params.yaml; the library takes these models' fields as typed arguments.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal, Optional

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from slimnet.archs import ARCHS
from slimnet.errors import SlimnetError
from slimnet.recipe import Recipe
from slimnet.validation import first_problem

SI = {"": 1, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}
_SIZE = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([KMGT]?)\s*$", re.IGNORECASE)


def parse_size(value: object) -> int:
    """200M, 1.5G, 300e6, 200000000 -> an integer count."""
    if isinstance(value, bool):
        raise ValueError("must be a size like 200M, 1.5G, 300e6 or 200000000")
    if isinstance(value, (int, float)):
        number = float(value)
    else:
        match = _SIZE.match(str(value))
        if not match:
            raise ValueError("must be a size like 200M, 1.5G, 300e6 or 200000000")
        number = float(match.group(1)) * SI[match.group(2).upper()]
    if number <= 0:
        raise ValueError("must be a positive size like 200M")
    return int(round(number))


Size = Annotated[int, BeforeValidator(parse_size)]
Fraction = Annotated[float, Field(gt=0, le=1)]
PositiveInt = Annotated[int, Field(gt=0)]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataParams(Section):
    source: Literal["fashion-mnist", "cifar10", "cifar100", "imagefolder"] = "fashion-mnist"
    root: str = "data/raw"
    val_fraction: Annotated[float, Field(gt=0, lt=1)] = 0.1
    fraction: Fraction = 1.0
    resolution: Optional[PositiveInt] = Field(None, validate_default=True)
    seed: int = 0
    skip_invalid: bool = False  # image folders: leave out images that do not decode instead of stopping

    @field_validator("resolution")
    @classmethod
    def _folder_has_resolution(cls, value: Optional[int], info: ValidationInfo) -> Optional[int]:
        if value is None and info.data.get("source") == "imagefolder":
            raise ValueError("required for source imagefolder (its images have no common size); set e.g. 224")
        return value


class ModelParams(Section):
    arch: Literal[ARCHS] = "mobilenet_v2"  # type: ignore[valid-type]
    width: Annotated[float, Field(gt=0)] = 1.0
    cifar: bool = False
    divisor: PositiveInt = 8


class TransferParams(Section):
    width: Annotated[float, Field(gt=0, le=1)] = 1.0
    depth: Annotated[float, Field(gt=0, le=1)] = 1.0
    resolution: Optional[PositiveInt] = None
    data_fraction: Fraction = 1.0


class SupernetParams(Recipe):
    """The training recipe plus the supernet's width range and sampling."""

    min_width: Annotated[float, Field(gt=0)] = 0.15
    max_width: Annotated[float, Field(gt=0)] = 1.5
    groups: Annotated[int, Field(ge=2)] = 10
    divisor: PositiveInt = 8
    samples: Annotated[int, Field(ge=0)] = 2
    eval_images: PositiveInt = 1024

    @model_validator(mode="after")
    def _range_ordered(self) -> "SupernetParams":
        if self.min_width >= self.max_width:
            raise ValueError(f"min_width ({self.min_width}) must be below max_width ({self.max_width})")
        return self


class SearchParams(Section):
    flops: Optional[Size] = None
    params: Optional[Size] = None
    criterion: Literal["accuracy", "loss"] = "accuracy"
    per_flop: bool = False
    bn: Literal["online", "recalibrate"] = "online"
    eval_images: PositiveInt = 2048
    calib_images: PositiveInt = 2048
    batch_size: PositiveInt = 1024
    floor: Annotated[float, Field(ge=0, lt=1)] = 0.0
    seed: int = 0

    @model_validator(mode="after")
    def _has_target(self) -> "SearchParams":
        if self.flops is None and self.params is None:
            raise ValueError("set a target: search.flops (e.g. 200M) and/or search.params")
        return self


class ExtrapolateParams(Section):
    stacking: Literal["average", "last"] = "average"
    tolerance: Annotated[float, Field(gt=0, lt=0.5)] = 0.01
    point: Literal["ratio", "stacked"] = "ratio"  # which trajectory point is carried to the full network
    random_seed: int = 0  # the random baseline's draw from the supernet's space


Variant = Literal["optimized", "uniform", "random"]


class TrainParams(Recipe):
    """The from-scratch recipe, shared by every trained variant, and what is trained with it:
    each variant once per seed (a DVC stage each, so a new seed trains only the new networks)."""

    seeds: Annotated[list[int], Field(min_length=1)] = [0]
    variants: list[Variant] = ["optimized", "uniform"]

    @model_validator(mode="after")
    def _seeds_and_variants(self) -> "TrainParams":
        if "seed" in self.model_fields_set:
            raise ValueError("train.seed is replaced by train.seeds, a list (e.g. seeds: [0, 1, 2])")
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds must be distinct, got {self.seeds}")
        if len(set(self.variants)) != len(self.variants) or not {"optimized", "uniform"} <= set(self.variants):
            raise ValueError(f"variants must list optimized and uniform once each (random optional), got {self.variants}")
        return self

    def with_seed(self, seed: int) -> Recipe:
        """The recipe of one training run."""
        return Recipe(**{**self.recipe_fields(), "seed": seed})


class EvaluateParams(Section):
    batch_size: PositiveInt = 512
    latency_runs: PositiveInt = 30


class Params(Section):
    data: DataParams = DataParams()
    model: ModelParams = ModelParams()
    transfer: TransferParams = TransferParams()
    supernet: SupernetParams = SupernetParams()
    search: SearchParams = SearchParams(flops=10**8)
    extrapolate: ExtrapolateParams = ExtrapolateParams()
    train: TrainParams = TrainParams()
    evaluate: EvaluateParams = EvaluateParams()


def load_params(path: Path = Path("params.yaml")) -> Params:
    """Read and validate params.yaml; any problem is one SlimnetError line naming the key."""
    path = Path(path)
    if not path.is_file():
        raise SlimnetError(f"{path} not found: run from the project root (where dvc.yaml is) or pass --params")
    try:
        # DVC reads YAML 1.2 (where 1e-4 is a number); PyYAML's 1.1 resolver calls it a string.
        raw = yaml.load(path.read_text(), Loader=_Yaml12Loader) or {}
    except yaml.YAMLError as error:
        raise SlimnetError(f"{path} is not valid YAML: {str(error).splitlines()[0]}") from None
    if not isinstance(raw, dict):
        raise SlimnetError(f"{path} must be a mapping of sections (data, model, ...)")
    # A section whose keys are all commented out means "use the defaults".
    raw = {section: {} if values is None else values for section, values in raw.items()}
    try:
        return Params.model_validate(raw)
    except ValidationError as error:
        raise SlimnetError(f"{path}: {first_problem(error)}") from None


class _Yaml12Loader(yaml.SafeLoader):
    pass


_Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?(?:[eE][-+]?[0-9]+)$|^[-+]?\.[0-9_]+(?:[eE][-+]?[0-9]+)?$"),
    list("-+0123456789."),
)
