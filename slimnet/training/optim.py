"""The training recipe shared by the supernet and from-scratch training: SGD, LR schedule."""

from __future__ import annotations

import math

import torch
from torch import nn

from slimnet.console.errors import SlimnetError
from slimnet.training.recipe import Recipe


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


# The step schedule: x0.1 at 30%, 60% and 90% of training (epochs 30, 60, 90 of ResNet's 100,
# the schedule AutoSlim trains its ResNet-50 networks with).
STEP_AT = (0.3, 0.6, 0.9)
STEP_GAMMA = 0.1


def lr_factor(step: int, total_steps: int, warmup_steps: int, schedule: str) -> float:
    """Linear warm-up, then linear or cosine decay to zero at ``total_steps``, or steps of x0.1."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "step":
        return STEP_GAMMA ** sum(step >= round(at * total_steps) for at in STEP_AT)
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    if schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return max(0.0, 1.0 - progress)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def schedule_steps(recipe: Recipe, train_images: int) -> tuple[int, int, int]:
    """Steps per epoch, total steps and warm-up steps of one training run (full batches only)."""
    steps_per_epoch = train_images // recipe.batch_size
    if steps_per_epoch < 1:
        raise SlimnetError(
            f"the training split has {train_images} images, fewer than one batch of {recipe.batch_size}: "
            "lower the batch size or use more data"
        )
    return steps_per_epoch, steps_per_epoch * recipe.epochs, int(recipe.warmup_epochs * steps_per_epoch)
