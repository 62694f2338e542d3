"""Training one slimmable network over a fixed list of widths (Slimmable Networks, Algorithm 1):
every step runs each width on the same batch, widest first, adds up their gradients, and
takes one optimizer step. With ``distill`` the narrower widths learn from the widest's
predictions (in-place distillation, as AutoSlim trains its slimmable models)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from slimnet.console.progress import Reporter
from slimnet.nn.switchable import SlimmableNetwork, recalibrate_width
from slimnet.stats.scoring import accuracy
from slimnet.training.checkpoint import Checkpoints
from slimnet.training.loop import Loop, Steps
from slimnet.training.recipe import Recipe
from slimnet.training.sandwich import distill_loss

BN_IMAGES = 2048  # training images each width's BN statistics are re-estimated on after an epoch


def slimmable_step(
    model: SlimmableNetwork,
    optimizer: torch.optim.Optimizer,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    label_smoothing: float,
    distill: bool,
    autocast: bool = False,
) -> list[torch.Tensor]:
    """One optimizer step over every width (index 0 must be the widest); the losses, detached."""
    optimizer.zero_grad(set_to_none=True)
    model.train()
    teacher = None
    losses = []
    for index in range(len(model.widths)):
        model.switch(index)
        with torch.autocast(images.device.type, dtype=torch.bfloat16, enabled=autocast):
            logits = model(images)
        if index == 0 or not distill:
            loss = F.cross_entropy(logits.float(), labels, label_smoothing=label_smoothing)
        else:
            loss = distill_loss(logits, teacher)
        if index == 0:
            teacher = F.softmax(logits.detach().float(), dim=-1)
        loss.backward()
        losses.append(loss.detach())
    optimizer.step()
    return losses


def evaluate_widths(model: SlimmableNetwork, batches: list) -> list[tuple[float, float]]:
    """(top-1 %, loss) of every width on the same batches, each with its own BN statistics."""
    results = []
    for index in range(len(model.widths)):
        model.switch(index)
        results.append(accuracy(model, batches))
    return results


def train_slimmable(
    model: SlimmableNetwork,
    train_set,
    val_set,
    *,
    recipe: Recipe,
    distill: bool,
    checkpoints: Checkpoints,
    device: torch.device,
    report: Reporter,
) -> tuple[SlimmableNetwork, list[dict], dict]:
    """The from-scratch recipe of training/scratch.py (SGD, warm-up, decay, augmentation), all widths at once;
    resumable after a kill from the last finished epoch."""
    model = model.to(device, memory_format=torch.channels_last)
    loop = Loop(model, train_set, recipe=recipe, checkpoints=checkpoints, report=report, name="slimmable")
    steps = JointSteps(model, train_set, val_set, recipe=recipe, loop=loop, distill=distill, device=device)
    curves, seconds = loop.run(steps)
    summary = {"val_acc": [curves[-1][f"val_acc_{w}"] for w in range(len(model.widths))], "train_seconds": round(seconds, 2)}
    return model, curves, summary


class JointSteps(Steps):
    """Every width on every batch (:func:`slimmable_step`); after an epoch, each width's BNs
    re-estimated and every width evaluated on the same held-out batches."""

    @property
    def headline(self) -> tuple[str, ...]:
        return tuple(f"val_acc_{width}" for width in range(len(self.model.widths)))

    def __init__(
        self, model: SlimmableNetwork, train_set, val_set, *, recipe: Recipe, loop: Loop, distill: bool, device: torch.device
    ):
        self.model, self.train_set, self.recipe, self.distill = model, train_set, recipe, distill
        self.steps_per_epoch, self.device = loop.steps_per_epoch, device
        self.autocast = device.type == "cuda"
        self.val_batches = list(val_set.batches(512, shuffle=False, augment=False))

    def begin_epoch(self) -> None:
        self.loss_sums = torch.zeros(len(self.model.widths), device=self.device)

    def step(self, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor) -> None:
        losses = slimmable_step(
            self.model, optimizer, x, y, label_smoothing=self.recipe.label_smoothing, distill=self.distill, autocast=self.autocast
        )
        self.loss_sums += torch.stack(losses)

    def evaluate(self) -> list[tuple[float, float]]:
        for width in range(len(self.model.widths)):
            bn_batches = self.train_set.batches(
                512, shuffle=True, augment=False, limit=BN_IMAGES, generator=torch.Generator().manual_seed(0)
            )
            recalibrate_width(self.model, width, (x for x, _ in bn_batches))
        return evaluate_widths(self.model, self.val_batches)

    def record(self, epoch: int, evaluation: list[tuple[float, float]]) -> tuple[dict, str]:
        row = {"epoch": epoch + 1}
        for width, ((acc, _), loss_sum) in enumerate(zip(evaluation, self.loss_sums.tolist())):
            row[f"train_loss_{width}"] = round(loss_sum / self.steps_per_epoch, 5)
            row[f"val_acc_{width}"] = round(acc, 3)
        return row, "val top-1 " + ", ".join(f"{acc:.2f}%" for acc, _ in evaluation)
