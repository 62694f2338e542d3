"""params.yaml, validated: one pydantic model per section, sizes written as "200M" or "1.5G".

Every default here is params.yaml's value (tests/test_config.py holds them equal), so a file
that leaves a key out gets the documented, measured default.

Only the CLI reads params.yaml; the library takes these models' fields as typed arguments.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal, Optional, Union

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

from slimnet.console.errors import SlimnetError
from slimnet.console.validation import first_problem
from slimnet.space.names import ARCHS
from slimnet.training.recipe import Epochs, LearningRate, Recipe, Seed, WarmupEpochs

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


_DURATION = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*(ms|us|µs|s)?\s*$", re.IGNORECASE)
_TO_MS = {"ms": 1.0, "us": 1e-3, "µs": 1e-3, "s": 1e3}
_BYTES = re.compile(r"^\s*(.*?)\s*(i?)b\s*$", re.IGNORECASE)


def parse_duration_ms(value: object) -> float:
    """5ms, 500us, 0.005s -> milliseconds; a bare number is milliseconds."""
    problem = "must be a duration like 5ms, 500us or 0.005s"
    if isinstance(value, bool):
        raise ValueError(problem)
    if isinstance(value, (int, float)):
        number = float(value)
    else:
        match = _DURATION.match(str(value))
        if not match:
            raise ValueError(problem)
        number = float(match.group(1)) * _TO_MS[(match.group(2) or "ms").lower()]
    if number <= 0:
        raise ValueError(problem + " (positive)")
    return number


_BINARY = {"K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


def parse_bytes(value: object) -> int:
    """4M or 4MB (10^6 bytes), 4MiB (2^20 bytes), 4000000 -> bytes."""
    problem = "must be a memory size like 4MB, 3.5MiB, 4M or 4000000 (bytes)"
    text = value if isinstance(value, str) else None
    try:
        if text is not None and text.strip().lower().endswith("ib"):
            number, prefix = text.strip()[:-2], text.strip()[-3:-2].upper()
            if prefix not in _BINARY:
                raise ValueError(problem)
            count = float(number[:-1])  # ValueError for "MiB", "xMiB"
            if not 0 < count < float("inf"):
                raise ValueError(problem)
            return int(round(count * _BINARY[prefix]))
        if text is not None and text.strip().lower().endswith("b"):
            return parse_size(text.strip()[:-1])
        return parse_size(value)
    except ValueError:
        raise ValueError(problem) from None


Size = Annotated[int, BeforeValidator(parse_size)]
Milliseconds = Annotated[float, BeforeValidator(parse_duration_ms)]
Bytes = Annotated[int, BeforeValidator(parse_bytes)]
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
    seed: Seed = 0
    skip_invalid: bool = False  # image folders: leave out images that do not decode instead of stopping

    @field_validator("resolution")
    @classmethod
    def _folder_has_resolution(cls, value: Optional[int], info: ValidationInfo) -> Optional[int]:
        if value is None and info.data.get("source") == "imagefolder":
            raise ValueError("required for source imagefolder (its images have no common size); set e.g. 224")
        return value


class ModelParams(Section):
    arch: Literal[ARCHS] = "mobilenet_v2"  # type: ignore[valid-type]
    width: Annotated[float, Field(gt=0)] = 0.35
    cifar: bool = True
    divisor: PositiveInt = 8


class TransferParams(Section):
    """The projected problem the search runs on; all 1.0 and resolution None: plain AutoSlim."""

    width: Annotated[float, Field(gt=0, le=1)] = 0.7
    depth: Annotated[float, Field(gt=0, le=1)] = 0.5
    resolution: Optional[PositiveInt] = 16
    data_fraction: Fraction = 0.2


class SupernetParams(Recipe):
    """The training recipe plus the supernet's width range and sampling."""

    min_width: Annotated[float, Field(gt=0)] = 0.15
    max_width: Annotated[float, Field(gt=0)] = 1.5
    groups: Annotated[int, Field(ge=2)] = 10
    divisor: PositiveInt = 2
    samples: Annotated[int, Field(ge=0)] = 2
    epochs: Epochs = 6
    lr: LearningRate = 0.05
    warmup_epochs: WarmupEpochs = 0.25
    eval_images: PositiveInt = 1024
    dropout: Optional[Annotated[float, Field(ge=0, lt=1)]] = None  # before the classifier; None: the architecture's

    @model_validator(mode="after")
    def _range_ordered(self) -> "SupernetParams":
        if self.min_width >= self.max_width:
            raise ValueError(f"min_width ({self.min_width}) must be below max_width ({self.max_width})")
        return self


class MorphNetParams(Recipe):
    """MorphNet's training (search.method: morphnet): the largest configuration of the supernet's
    channel space, trained with the resource-weighted L1 penalty on its BN scales."""

    strength: Annotated[float, Field(gt=0)] = 30.0  # penalty weight, relative to the network's full cost
    threshold: Annotated[float, Field(gt=0)] = 0.01  # a channel is alive while its BN scale's |gamma| exceeds this
    resource: Literal["flops", "params"] = "flops"  # what the penalty weighs each channel by
    epochs: Epochs = 6
    lr: LearningRate = 0.05
    warmup_epochs: WarmupEpochs = 0.25


class DMCPParams(Recipe):
    """DMCP's search (search.method: dmcp): the trained supernet trained on, each step followed by
    an architecture step on the Markov chains' logits towards the budgets' expected cost."""

    epochs: Epochs = 6  # the official run: as many epochs of chains as of plain sandwich training before
    lr: LearningRate = 0.05
    warmup_epochs: WarmupEpochs = 0.25
    samples: Annotated[int, Field(ge=0)] = 2  # random configurations per weight step (sandwich rule)
    arch_lr: Annotated[float, Field(gt=0, le=10)] = 0.1  # Adam on the chains' logits
    cost_weight: Annotated[float, Field(gt=0)] = 0.1  # the budget loss's weight beside the task loss (official 0.1)
    start: Literal["budget", "half"] = "budget"  # the chains' start: at the budget, or every transition 0.5 (official)


class SearchParams(Section):
    method: Literal["autoslim", "morphnet", "dmcp"] = "autoslim"
    flops: Optional[Size] = 6_000_000
    params: Optional[Size] = None
    latency: Optional[Milliseconds] = None  # predicted batch-1 latency on latency.device, in ms
    memory: Optional[Bytes] = None  # weights + every feature map at batch 1, float32 (flops.cost)
    criterion: Literal["accuracy", "loss", "calibrated"] = "calibrated"
    per_flop: bool = True
    bn: Literal["online", "recalibrate"] = "online"
    eval_images: PositiveInt = 1024
    calib_images: PositiveInt = 512
    batch_size: PositiveInt = 512
    floor: Annotated[float, Field(ge=0, lt=1)] = 0.2
    seed: Seed = 0

    @model_validator(mode="after")
    def _has_target(self) -> "SearchParams":
        if all(getattr(self, key) is None for key in BUDGET_KEYS):
            raise ValueError(
                "set a target: search.flops (e.g. 200M), search.params, search.latency (e.g. 5ms) and/or search.memory (e.g. 4MB)"
            )
        return self


BUDGET_KEYS = ("flops", "params", "latency", "memory")


class LatencyParams(Section):
    """Where and how the per-layer latency table is measured (the `latency` stage)."""

    device: Literal["cpu", "cuda"] = "cpu"
    threads: PositiveInt = 1  # CPU threads torch may use (batch-1 deployment: usually 1)
    repeats: PositiveInt = 30  # timed blocks per layer width and per calibration network


class ExtrapolateParams(Section):
    stacking: Literal["average", "last"] = "average"
    tolerance: Annotated[float, Field(gt=0, lt=0.5)] = 0.01
    point: Literal["ratio", "stacked"] = "ratio"  # which trajectory point is carried to the full network
    random_draws: list[Seed] = [0, 1, 2, 3, 4]  # seeds of the random baseline's draws from the supernet's space

    @model_validator(mode="before")
    @classmethod
    def _no_single_seed(cls, data: object) -> object:
        if isinstance(data, dict) and "random_seed" in data:
            raise ValueError("random_seed is replaced by random_draws, a list of draw seeds (e.g. random_draws: [0, 1, 2, 3, 4])")
        return data

    @field_validator("random_draws")
    @classmethod
    def _distinct_draws(cls, value: list[int]) -> list[int]:
        if not value:
            raise ValueError("give at least one draw seed, e.g. [0, 1, 2, 3, 4] (the study uses five or more)")
        if len(set(value)) != len(value):
            raise ValueError("draw seeds must be distinct")
        return value


Variant = Literal["optimized", "uniform", "random"]


class TrainParams(Recipe):
    """The from-scratch recipe, shared by every trained variant, and what is trained with it:
    each variant once per seed (a DVC stage each, so a new seed trains only the new networks)."""

    epochs: Epochs = 2
    warmup_epochs: WarmupEpochs = 0.1
    seeds: Annotated[list[Seed], Field(min_length=1)] = [0]
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
    batch_size: PositiveInt = 1000
    latency_runs: PositiveInt = 200  # timed blocks (slimnet.deploy.measure.Timing.repeats)


class SlimmableParams(Section):
    """One network with switchable BN for several FLOPs targets (empty list: off, the stage only
    records that). Each target is extrapolated from the search trajectory like search.flops."""

    targets: list[Size] = []
    distill: bool = True  # narrower widths learn from the widest's predictions (in-place distillation)
    epochs: Optional[PositiveInt] = None  # null: train.epochs, so each width compares fairly with individual training

    @field_validator("targets")
    @classmethod
    def _distinct_budgets(cls, value: list[int]) -> list[int]:
        if len(value) == 1:
            raise ValueError("give two or more FLOPs targets (e.g. [4M, 6M, 8M]), or [] to leave the slimmable network off")
        if len(set(value)) != len(value):
            raise ValueError(f"targets must differ, got {value}")
        return sorted(value, reverse=True)  # widest first: it is the teacher of the others


class DiagnosticsParams(Section):
    """Search-quality diagnostics that cost training time (the `alone` and `stability` stages; off: they record that)."""

    alone: bool = False  # train the supernet's max and min configurations alone, with its recipe
    stability: bool = False  # search again on a second held-out sample and a second supernet seed


class ResourcesParams(Section):
    """How many processes run the heavy stages (supernet, search, train): never what they compute,
    so no stage lists these keys and changing them reruns nothing (like --device)."""

    nproc: Union[PositiveInt, Literal["auto"]] = 1  # per node; auto: one per GPU, else 1
    nnodes: PositiveInt = 1
    rdzv_endpoint: Optional[str] = None  # host:port of the first node, required when nnodes > 1
    rdzv_id: str = "slimnet"  # the same on every node of one job
    sync_bn: bool = False  # batch statistics over the global batch: results equal 1 process's
    threads: Union[PositiveInt, Literal["auto"]] = "auto"  # intra-op threads per process; auto: cores / nproc

    @model_validator(mode="after")
    def _several_nodes_meet(self) -> "ResourcesParams":
        if self.nnodes > 1 and not self.rdzv_endpoint:
            raise ValueError(f"nnodes is {self.nnodes}: set rdzv_endpoint to host:port of the first node (e.g. node0:29400)")
        if self.rdzv_endpoint is not None and not re.fullmatch(r"\[?[\w.:-]+\]?:\d+", self.rdzv_endpoint):
            raise ValueError(f"rdzv_endpoint must be host:port, got {self.rdzv_endpoint!r}")
        return self


class Params(Section):
    data: DataParams = DataParams()
    model: ModelParams = ModelParams()
    transfer: TransferParams = TransferParams()
    supernet: SupernetParams = SupernetParams()
    morphnet: MorphNetParams = MorphNetParams()
    dmcp: DMCPParams = DMCPParams()
    search: SearchParams = SearchParams()
    latency: LatencyParams = LatencyParams()
    extrapolate: ExtrapolateParams = ExtrapolateParams()
    train: TrainParams = TrainParams()
    evaluate: EvaluateParams = EvaluateParams()
    slimmable: SlimmableParams = SlimmableParams()
    diagnostics: DiagnosticsParams = DiagnosticsParams()

    @model_validator(mode="after")
    def _slimmable_epochs_after_warmup(self) -> "Params":
        epochs = self.slimmable.epochs
        if epochs is not None and self.train.warmup_epochs >= epochs:
            raise ValueError(f"slimmable.epochs ({epochs}) must be above train.warmup_epochs ({self.train.warmup_epochs})")
        return self

    def slimmable_recipe(self) -> TrainParams:
        """The train recipe, with slimmable.epochs when set."""
        if self.slimmable.epochs is None:
            return self.train
        return self.train.model_copy(update={"epochs": self.slimmable.epochs})

    resources: ResourcesParams = ResourcesParams()


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
