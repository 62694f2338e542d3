"""Training one slimmable network over a fixed list of widths (Slimmable Networks, Algorithm 1):
every step runs each width on the same batch, widest first, adds up their gradients, and
takes one optimizer step. With ``distill`` the narrower widths learn from the widest's
predictions (in-place distillation, as AutoSlim trains its slimmable models)."""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F

from slimnet.console.progress import Reporter
from slimnet.nn.switchable import SlimmableNetwork, recalibrate_width
from slimnet.stats.scoring import accuracy
from slimnet.training.checkpoint import Checkpoints, restore_rng_state, rng_state
from slimnet.training.optim import lr_factor, make_optimizer, schedule_steps, set_lr
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
        report.line(f"slimmable: resuming after epoch {start_epoch}/{recipe.epochs}")
    autocast = device.type == "cuda"
    val_batches = list(val_set.batches(512, shuffle=False, augment=False))
    for epoch in range(start_epoch, recipe.epochs):
        started = time.perf_counter()
        report.start(f"slimmable epoch {epoch + 1}/{recipe.epochs}", steps_per_epoch)
        loss_sums = torch.zeros(len(model.widths), device=device)
        for index, (x, y) in enumerate(
            train_set.batches(recipe.batch_size, shuffle=True, augment=True, generator=data_generator, drop_last=True)
        ):
            step = epoch * steps_per_epoch + index
            set_lr(optimizer, recipe.scaled_lr() * lr_factor(step, total_steps, warmup_steps, recipe.schedule))
            losses = slimmable_step(
                model, optimizer, x, y, label_smoothing=recipe.label_smoothing, distill=distill, autocast=autocast
            )
            loss_sums += torch.stack(losses)
            report.advance()
        for width in range(len(model.widths)):
            bn_batches = train_set.batches(
                512, shuffle=True, augment=False, limit=BN_IMAGES, generator=torch.Generator().manual_seed(0)
            )
            recalibrate_width(model, width, (x for x, _ in bn_batches))
        results = evaluate_widths(model, val_batches)
        seconds += time.perf_counter() - started
        row = {"epoch": epoch + 1}
        for width, ((acc, _), loss_sum) in enumerate(zip(results, loss_sums.tolist())):
            row[f"train_loss_{width}"] = round(loss_sum / steps_per_epoch, 5)
            row[f"val_acc_{width}"] = round(acc, 3)
        curves.append(row)
        report.line(
            f"slimmable epoch {epoch + 1}/{recipe.epochs}: val top-1 "
            + ", ".join(f"{acc:.2f}%" for acc, _ in results)
            + f" ({time.perf_counter() - started:.1f}s)"
        )
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
    summary = {"val_acc": [curves[-1][f"val_acc_{w}"] for w in range(len(model.widths))], "train_seconds": round(seconds, 2)}
    return model, curves, summary
