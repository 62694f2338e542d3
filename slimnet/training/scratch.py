"""From-scratch training of one plain network, resumable after a kill."""

from __future__ import annotations

import time
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from slimnet.console.progress import Reporter
from slimnet.nn.bn import recalibrate_plain
from slimnet.nn.sync_bn import local_bn, use_sync_bn
from slimnet.parallel.world import SINGLE, World
from slimnet.stats.scoring import accuracy
from slimnet.training.checkpoint import Checkpoints, restore_rng_state, rng_state
from slimnet.training.distributed import GradientReducer, loss_share
from slimnet.training.optim import lr_factor, make_optimizer, schedule_steps, set_lr
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
    optimizer = make_optimizer(
        model, lr=recipe.scaled_lr(), momentum=recipe.momentum, nesterov=recipe.nesterov, weight_decay=recipe.weight_decay
    )
    data_generator = torch.Generator().manual_seed(recipe.seed)
    steps_per_epoch, total_steps, warmup_steps = schedule_steps(recipe, len(train_set))
    curves: list[dict] = []
    start_epoch, seconds = 0, 0.0
    state = checkpoints.load()
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        data_generator.set_state(state["data_generator"])
        restore_rng_state(state["rng"])
        start_epoch, curves, seconds = state["epoch"], state["curves"], state["seconds"]
        report.line(f"{name}: resuming after epoch {start_epoch}/{recipe.epochs}")
    autocast = device.type == "cuda"
    for epoch in range(start_epoch, recipe.epochs):
        started = time.perf_counter()
        model.train()
        report.start(f"{name} epoch {epoch + 1}/{recipe.epochs}", steps_per_epoch)
        world.seed_dropout(recipe.seed, epoch)
        loss_sum = torch.zeros((), device=device)
        shard = (world.rank, world.size)
        for index, (x, y) in enumerate(
            train_set.batches(
                recipe.batch_size, shuffle=True, augment=True, generator=data_generator, drop_last=True, shard=shard
            )
        ):
            set_lr(
                optimizer,
                recipe.scaled_lr() * lr_factor(epoch * steps_per_epoch + index, total_steps, warmup_steps, recipe.schedule),
            )
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
                logits = model(x)
            loss = F.cross_entropy(logits.float(), y, label_smoothing=recipe.label_smoothing)
            share = loss_share(len(y), recipe.batch_size)
            if share != 1.0:
                loss = loss * share  # the ranks' shares add up to the global batch's mean
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            (step_loss,) = reducer.reduce(loss.detach())
            optimizer.step()
            loss_sum += step_loss  # no host sync inside the step
            report.advance()
        # A fixed random subset: image folders are stored class by class.
        bn_batches = train_set.batches(
            512, shuffle=True, augment=False, limit=BN_IMAGES, generator=torch.Generator().manual_seed(0)
        )
        with local_bn(model):  # every rank re-estimates on the same images
            recalibrate_plain(model, (x for x, _ in bn_batches))
        val_acc, val_loss = accuracy(model, val_set.batches(512, shuffle=False, augment=False, shard=shard), world)
        seconds += time.perf_counter() - started
        row = {
            "epoch": epoch + 1,
            "train_loss": round(float(loss_sum) / steps_per_epoch, 5),
            "val_acc": round(val_acc, 3),
            "val_loss": round(val_loss, 5),
        }
        curves.append(row)
        report.line(
            f"{name} epoch {epoch + 1}/{recipe.epochs}: loss {row['train_loss']:.4f}, val top-1 {val_acc:.2f}% ({time.perf_counter() - started:.1f}s)"
        )
        if world.is_main:
            checkpoints.save(
                {
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "data_generator": data_generator.get_state(),
                    "epoch": epoch + 1,
                    "rng": rng_state(),
                    "curves": curves,
                    "seconds": seconds,
                }
            )
        if on_epoch is not None:
            on_epoch(row)
    summary = {"val_acc": curves[-1]["val_acc"], "train_seconds": round(seconds, 2), "epochs": recipe.epochs}
    if world.size > 1:
        summary["allreduce_seconds"] = round(reducer.seconds, 2)
    return model, curves, summary
