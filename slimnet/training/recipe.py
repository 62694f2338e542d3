"""The training recipe (SGD with warm-up and decay), validated: no torch here, so params
validation can use it without making the data stages depend on training code."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

# The fields whose defaults differ between params.yaml's `train` and `supernet` sections: each
# section restates them with its own default, and these keep the constraints in one place.
Epochs = Annotated[int, Field(gt=0)]
LearningRate = Annotated[float, Field(gt=0)]
WarmupEpochs = Annotated[float, Field(ge=0)]
# A seed names stages and networks (train@uniform-3, random-2) and torch takes it unsigned: a
# negative one would wrap around silently, one past 64 bits would stop a stage midway. 32 bits
# leave room for the offsets the stages add (seed + 1, + 1_000_003 per rank).
Seed = Annotated[int, Field(ge=0, le=2**32 - 1)]


class Recipe(BaseModel):
    """How to train: SGD with warm-up and decay. params.yaml's `train` section is one, and its
    `supernet` section extends one, so the two never drift apart."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    epochs: Epochs = 1
    batch_size: Annotated[int, Field(gt=0)] = 128
    lr: LearningRate = 0.1
    momentum: Annotated[float, Field(ge=0, lt=1)] = 0.9
    nesterov: bool = True
    weight_decay: Annotated[float, Field(ge=0)] = 4e-5
    schedule: Literal["linear", "cosine", "step"] = "cosine"  # step: x0.1 at 30/60/90% of the epochs
    warmup_epochs: WarmupEpochs = 0.0
    label_smoothing: Annotated[float, Field(ge=0, lt=1)] = 0.1
    seed: Seed = 0

    @model_validator(mode="after")
    def _warmup_within_training(self) -> "Recipe":
        if self.warmup_epochs >= self.epochs:
            raise ValueError(f"warmup_epochs ({self.warmup_epochs}) must be below epochs ({self.epochs})")
        return self

    def scaled_lr(self) -> float:
        """Linear scaling from the papers' batch of 256."""
        return self.lr * self.batch_size / 256

    def recipe_fields(self) -> dict:
        """The recipe alone (a subclass's extra fields left out): what a checkpoint is keyed on."""
        return {name: getattr(self, name) for name in Recipe.model_fields}
