"""The trajectory a width optimizer writes and extrapolate reads: each greedy step's
configuration, its costs and its held-out score, and the reference network they are relative to.

Plain data: the cost arithmetic (transfer, budgets) reads it without importing the evaluator."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

from slimnet import atomic
from slimnet.console.errors import SlimnetError
from slimnet.space.spec import ArchSpec


class CostRatio(BaseModel):
    """A configuration's cost relative to the uniform network the supernet was built around."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    flops: float
    params: float


class TrajectoryPoint(BaseModel):
    """One greedy step: the configuration it committed, its cost and its held-out score."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    step: int
    slimmed: str | None  # the unit shrunk at this step, comma-separated units for MorphNet and DMCP (None at the start)
    flops: int
    params: int
    memory: int
    accuracy: float  # top-1 % on the search's held-out images
    loss: float
    calibrated_loss: float | None = None  # the loss at the best logit scale (scoring.calibrated_loss)
    evaluations: int  # candidates scored to choose this step
    ratio: CostRatio
    channels: dict[str, int]
    # How close the decision was: the second-best unit and how much worse its ranking value was
    # (criterion units, or per relative FLOPs saved with per_flop). None where one candidate was left.
    runner_up: str | None = None
    margin: float | None = None


OPTIMIZERS = {"autoslim": "AutoSlim", "morphnet": "MorphNet", "dmcp": "DMCP"}  # search.method -> its name in notes


class Trajectory(BaseModel):
    """The whole path of a search, largest configuration first, and its reference network."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    reference: ArchSpec
    points: list[TrajectoryPoint]
    method: Literal["autoslim", "morphnet", "dmcp"] = "autoslim"  # the width optimizer that wrote it

    def save(self, path: Path) -> None:
        atomic.write_text(path, self.model_dump_json(indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> "Trajectory":
        path = Path(path)
        if not path.is_file():
            raise SlimnetError(f"{path} not found: run `dvc repro search` first")
        try:
            return cls.model_validate_json(path.read_text())
        except ValueError as error:
            raise SlimnetError(
                f"{path} is not a slimnet trajectory ({str(error).splitlines()[0]}): re-run the search stage"
            ) from None
