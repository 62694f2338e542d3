"""The training recipe shared by the supernet and from-scratch training: SGD, LR schedule."""

from __future__ import annotations

import math
from typing import Annotated, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import nn

from slimnet.errors import SlimnetError


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """No weight decay on BN, biases and depthwise weights (they are few and easily over-shrunk)."""
    decay, no_decay = [], []
    for module in model.modules():
        for param in module.parameters(recurse=False):
            depthwise = isinstance(module, nn.Conv2d) and module.groups > 1
            if param.dim() <= 1 or depthwise or isinstance(module, nn.BatchNorm2d):
                no_decay.append(param)
            else:
                decay.append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def make_optimizer(model: nn.Module, *, lr: float, momentum: float, nesterov: bool, weight_decay: float) -> torch.optim.SGD:
    return torch.optim.SGD(param_groups(model, weight_decay), lr=lr, momentum=momentum, nesterov=nesterov and momentum > 0)


def lr_factor(step: int, total_steps: int, warmup_steps: int, schedule: str) -> float:
    """Linear warm-up, then linear or cosine decay to zero at ``total_steps``."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    if schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return max(0.0, 1.0 - progress)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


class Recipe(BaseModel):
    """How to train: SGD with warm-up and decay. params.yaml's `train` section is one, and its
    `supernet` section extends one, so the two never drift apart."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    epochs: Annotated[int, Field(gt=0)] = 1
    batch_size: Annotated[int, Field(gt=0)] = 128
    lr: Annotated[float, Field(gt=0)] = 0.1
    momentum: Annotated[float, Field(ge=0, lt=1)] = 0.9
    nesterov: bool = True
    weight_decay: Annotated[float, Field(ge=0)] = 4e-5
    schedule: Literal["linear", "cosine"] = "cosine"
    warmup_epochs: Annotated[float, Field(ge=0)] = 0.0
    label_smoothing: Annotated[float, Field(ge=0, lt=1)] = 0.1
    seed: int = 0

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


def schedule_steps(recipe: Recipe, train_images: int) -> tuple[int, int, int]:
    """Steps per epoch, total steps and warm-up steps of one training run (full batches only)."""
    steps_per_epoch = train_images // recipe.batch_size
    if steps_per_epoch < 1:
        raise SlimnetError(
            f"the training split has {train_images} images, fewer than one batch of {recipe.batch_size}: "
            "lower the batch size or use more data"
        )
    return steps_per_epoch, steps_per_epoch * recipe.epochs, int(recipe.warmup_epochs * steps_per_epoch)
