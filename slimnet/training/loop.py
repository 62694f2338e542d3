"""The one resumable training loop: SGD with the recipe's schedule, a checkpoint after every
epoch (model, optimizer, generators, global RNG, curves), progress lines and a held-out
evaluation per epoch. Each trainer supplies only what differs: its step and its evaluation
(:class:`Steps`); from-scratch training (scratch.py), the supernet (sandwich.py) and the
slimmable network (joint.py) all run here.
"""

from __future__ import annotations

import time
from typing import Any, Callable

import torch
from torch import nn

from slimnet.console.progress import Reporter
from slimnet.parallel.world import SINGLE, World
from slimnet.training.checkpoint import Checkpoints, restore_rng_state, rng_state
from slimnet.training.optim import lr_factor, make_optimizer, schedule_steps, set_lr
from slimnet.training.recipe import Recipe


class Steps:
    """What one trainer does inside the loop. ``generators``: its own seeded generators (the
    supernet's configuration draws), checkpointed under their keys before the data order's."""

    generators: dict[str, torch.Generator] = {}
    headline: tuple[str, ...] = ()  # the curve row's figures `dvc exp show` shows while it runs

    def begin_epoch(self) -> None:
        """Before an epoch's first step (reset the loss sums)."""

    def step(self, optimizer: torch.optim.Optimizer, images: torch.Tensor, labels: torch.Tensor) -> None:
        """One optimizer step on one batch (the learning rate is set already)."""
        raise NotImplementedError

    def evaluate(self) -> Any:
        """After an epoch's last step: the held-out evaluation (counted in the epoch's seconds)."""

    def record(self, epoch: int, evaluation: Any) -> tuple[dict, str]:
        """The epoch's curve row and its progress text (between "epoch i/n: " and the seconds)."""
        raise NotImplementedError

    def totals(self) -> dict:
        """Running totals a resumed run continues (checkpointed after the curves)."""
        return {}

    def restore_totals(self, state: dict) -> None:
        pass


class Loop:
    """Optimizer, schedule and data order of one training run; :meth:`run` trains the epochs a
    checkpoint does not already hold. ``data_seed`` seeds the data order and augmentation draws
    (``recipe.seed`` unless given). With several ranks (``world``) each takes its share of every
    global batch; rank 0 alone saves checkpoints."""

    def __init__(
        self,
        model: nn.Module,
        train_set,
        *,
        recipe: Recipe,
        checkpoints: Checkpoints,
        report: Reporter,
        name: str,
        world: World = SINGLE,
        data_seed: int | None = None,
    ):
        self.model, self.train_set, self.recipe = model, train_set, recipe
        self.checkpoints, self.report, self.name, self.world = checkpoints, report, name, world
        self.optimizer = make_optimizer(
            model, lr=recipe.scaled_lr(), momentum=recipe.momentum, nesterov=recipe.nesterov, weight_decay=recipe.weight_decay
        )
        self.data_seed = recipe.seed if data_seed is None else data_seed
        self.steps_per_epoch, self.total_steps, self.warmup_steps = schedule_steps(recipe, len(train_set))

    def run(self, steps: Steps, on_epoch: Callable[[dict], None] | None = None) -> tuple[list[dict], float]:
        """Train (resuming after the last checkpointed epoch); returns the curves and the seconds spent.

        A checkpoint holds what a resumed run needs; nothing in it depends on the number of ranks."""
        recipe, world, report, name = self.recipe, self.world, self.report, self.name
        data_generator = torch.Generator().manual_seed(self.data_seed)
        generators = {**steps.generators, "data_generator": data_generator}
        curves: list[dict] = []
        start_epoch, seconds = 0, 0.0
        state = self.checkpoints.load()
        if state is not None:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            for key, generator in generators.items():
                generator.set_state(state[key])
            restore_rng_state(state["rng"])
            steps.restore_totals(state)
            start_epoch, curves, seconds = state["epoch"], state["curves"], state["seconds"]
            report.line(f"{name}: resuming after epoch {start_epoch}/{recipe.epochs}")
        report.epochs(curves, steps.headline, name)  # the live curves restart with what the checkpoint holds
        for epoch in range(start_epoch, recipe.epochs):
            started = time.perf_counter()
            steps.begin_epoch()
            report.start(f"{name} epoch {epoch + 1}/{recipe.epochs}", self.steps_per_epoch)
            world.seed_dropout(recipe.seed, epoch)
            batches = self.train_set.batches(
                recipe.batch_size,
                shuffle=True,
                augment=True,
                generator=data_generator,
                drop_last=True,
                shard=(world.rank, world.size),
            )
            for index, (images, labels) in enumerate(batches):
                step = epoch * self.steps_per_epoch + index
                factor = lr_factor(step, self.total_steps, self.warmup_steps, recipe.schedule)
                set_lr(self.optimizer, recipe.scaled_lr() * factor)
                steps.step(self.optimizer, images, labels)
                report.advance()
            evaluation = steps.evaluate()
            seconds += time.perf_counter() - started
            row, text = steps.record(epoch, evaluation)
            curves.append(row)
            report.line(f"{name} epoch {epoch + 1}/{recipe.epochs}: {text} ({time.perf_counter() - started:.1f}s)")
            report.epochs([row], steps.headline, name)
            if world.is_main:
                self.checkpoints.save(
                    {
                        "model": self.model.state_dict(),
                        "optimizer": self.optimizer.state_dict(),
                        **{key: generator.get_state() for key, generator in generators.items()},
                        "epoch": epoch + 1,
                        "rng": rng_state(),
                        "curves": curves,
                        **steps.totals(),
                        "seconds": seconds,
                    }
                )
            if on_epoch is not None:
                on_epoch(row)
        return curves, seconds
