"""From-scratch training of one plain network, resumable after a kill."""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from slimnet.console.progress import Reporter
from slimnet.nn.bn import recalibrate_plain
from slimnet.nn.sync_bn import local_bn, use_sync_bn
from slimnet.parallel.world import SINGLE, World
from slimnet.stats.scoring import accuracy
from slimnet.training.checkpoint import Checkpoints
from slimnet.training.distributed import GradientReducer, loss_share
from slimnet.training.loop import Loop, Steps
from slimnet.training.recipe import Recipe

BN_IMAGES = 2048  # training images the BN statistics are re-estimated on after each epoch


def train_network(
    model: nn.Module,
    train_set,
    val_set,
    *,
    recipe: Recipe,
    checkpoints: Checkpoints,
    device: torch.device,
    report: Reporter,
    name: str = "train",
    on_epoch: Callable[[dict], None] | None = None,
    world: World = SINGLE,
    sync_bn: bool = False,
) -> tuple[nn.Module, list[dict], dict]:
    """SGD + nesterov with warm-up and linear/cosine decay, label smoothing, augmentation.

    With several ranks (``world``), each takes its share of every global batch of
    ``recipe.batch_size`` (same learning rate as one process) and of the validation images;
    gradients are summed over ranks once per step; rank 0 alone saves checkpoints.
    """
    model = model.to(device, memory_format=torch.channels_last)
    if sync_bn:
        use_sync_bn(model, world)
    reducer = GradientReducer(list(model.parameters()), world)
    loop = Loop(model, train_set, recipe=recipe, checkpoints=checkpoints, report=report, name=name, world=world)
    steps = PlainSteps(model, train_set, val_set, recipe=recipe, loop=loop, reducer=reducer, device=device, world=world)
    curves, seconds = loop.run(steps, on_epoch)
    summary = {"val_acc": curves[-1]["val_acc"], "train_seconds": round(seconds, 2), "epochs": recipe.epochs}
    if world.size > 1:
        summary["allreduce_seconds"] = round(reducer.seconds, 2)
    return model, curves, summary


class PlainSteps(Steps):
    """One network, one loss per step (its share of the global batch's mean)."""

    headline = ("val_acc",)

    def __init__(
        self, model: nn.Module, train_set, val_set, *, recipe: Recipe, loop: Loop, reducer: GradientReducer, device, world: World
    ):
        self.model, self.train_set, self.val_set, self.recipe = model, train_set, val_set, recipe
        self.steps_per_epoch, self.reducer, self.device, self.world = loop.steps_per_epoch, reducer, device, world
        self.autocast = device.type == "cuda"

    def begin_epoch(self) -> None:
        self.model.train()
        self.loss_sum = torch.zeros((), device=self.device)

    def step(self, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor) -> None:
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.autocast):
            logits = self.model(x)
        task = F.cross_entropy(logits.float(), y, label_smoothing=self.recipe.label_smoothing)
        extra = self.extra_loss()
        loss = task if extra is None else task + extra
        share = loss_share(len(y), self.recipe.batch_size)
        if share != 1.0:
            loss, task = loss * share, task * share  # the ranks' shares add up to the global batch's mean
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        (step_loss,) = self.reducer.reduce(task.detach())  # the curves' loss: the task's alone
        optimizer.step()
        self.loss_sum += step_loss  # no host sync inside the step

    def extra_loss(self) -> torch.Tensor | None:
        """A term added to the task loss once per step (a subclass's regularizer; plain training: none)."""
        return None

    def evaluate(self) -> tuple[float, float]:
        # A fixed random subset: image folders are stored class by class.
        bn_batches = self.train_set.batches(
            512, shuffle=True, augment=False, limit=BN_IMAGES, generator=torch.Generator().manual_seed(0)
        )
        with local_bn(self.model):  # every rank re-estimates on the same images
            recalibrate_plain(self.model, (x for x, _ in bn_batches))
        shard = (self.world.rank, self.world.size)
        return accuracy(self.model, self.val_set.batches(512, shuffle=False, augment=False, shard=shard), self.world)

    def record(self, epoch: int, evaluation: tuple[float, float]) -> tuple[dict, str]:
        val_acc, val_loss = evaluation
        row = {
            "epoch": epoch + 1,
            "train_loss": round(float(self.loss_sum) / self.steps_per_epoch, 5),
            "val_acc": round(val_acc, 3),
            "val_loss": round(val_loss, 5),
        }
        return row, f"loss {row['train_loss']:.4f}, val top-1 {val_acc:.2f}%"
