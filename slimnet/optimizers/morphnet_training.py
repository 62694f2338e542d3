"""MorphNet's training: the largest configuration of the channel space trained on the labels
plus ``strength`` times the resource-weighted penalty (morphnet.Regularizer), relative to the
network's full cost so one strength means the same at any size. Resumable like every training
(training.loop)."""

from __future__ import annotations

from typing import Callable

import torch

from slimnet.console.progress import Reporter
from slimnet.nn.network import Network
from slimnet.nn.sync_bn import use_sync_bn
from slimnet.optimizers.morphnet_penalty import LayerCost, Regularizer, alive_cost, permute_units, ranked_channels
from slimnet.parallel.world import SINGLE, World
from slimnet.space.channels import ChannelSpace
from slimnet.space.flops import flops as count_flops
from slimnet.training.checkpoint import Checkpoints
from slimnet.training.distributed import GradientReducer
from slimnet.training.loop import Loop
from slimnet.training.recipe import Recipe
from slimnet.training.scratch import PlainSteps


def train_morphnet(
    space: ChannelSpace,
    layers: list[LayerCost],
    train_set,
    val_set,
    *,
    recipe: Recipe,
    resolution: int,
    strength: float,
    threshold: float,
    checkpoints: Checkpoints,
    device: torch.device,
    report: Reporter,
    world: World = SINGLE,
    sync_bn: bool = False,
    on_epoch: Callable[[dict], None] | None = None,
) -> tuple[Network, dict[str, list[float]], list[dict], dict]:
    """Train with the penalty; returns the network with each unit's channels sorted by score
    (highest first, so keeping k channels is a prefix), the sorted scores, the curves and a summary."""
    torch.manual_seed(recipe.seed)
    network = Network(space.blueprint, space.maximum).to(device, memory_format=torch.channels_last)
    if sync_bn:
        use_sync_bn(network, world)
    regularizer = Regularizer(network, layers, threshold)
    full_cost = alive_cost(layers, space.maximum)
    reducer = GradientReducer(list(network.parameters()), world)
    loop = Loop(network, train_set, recipe=recipe, checkpoints=checkpoints, report=report, name="morphnet", world=world)
    steps = MorphNetSteps(
        network,
        train_set,
        val_set,
        recipe=recipe,
        loop=loop,
        reducer=reducer,
        device=device,
        world=world,
        regularizer=regularizer,
        weight=strength / full_cost,
        full_cost=full_cost,
    )
    curves, seconds = loop.run(steps, on_epoch)
    scores = regularizer.scores()
    alive = regularizer.alive_counts()
    permute_units(network, ranked_channels(scores))
    sorted_scores = {unit: [round(float(v), 6) for v in r.detach()] for unit, r in regularizer.scores().items()}
    summary = {
        "val_acc": curves[-1]["val_acc"],
        "alive_cost_ratio": curves[-1]["alive_cost_ratio"],
        "alive": alive,
        # forward + backward ~ 3x the forward multiply-accumulates, one network per image
        "train_flops": 3
        * recipe.epochs
        * loop.steps_per_epoch
        * recipe.batch_size
        * count_flops(space.blueprint, space.maximum, resolution),
        "train_seconds": round(seconds, 2),
    }
    return network, sorted_scores, curves, summary


class MorphNetSteps(PlainSteps):
    """A plain step whose loss adds the weighted penalty (each rank adds its share, so once over the ranks)."""

    headline = ("val_acc", "alive_cost_ratio")

    def __init__(self, *args, regularizer: Regularizer, weight: float, full_cost: float, **kwargs):
        super().__init__(*args, **kwargs)
        self.regularizer, self.weight, self.full_cost = regularizer, weight, full_cost

    def begin_epoch(self) -> None:
        super().begin_epoch()
        self.penalty_sum = torch.zeros((), device=self.device)

    def extra_loss(self) -> torch.Tensor:
        penalty = self.weight * self.regularizer.penalty()
        self.penalty_sum += penalty.detach()
        return penalty

    def record(self, epoch: int, evaluation: tuple[float, float]) -> tuple[dict, str]:
        row, text = super().record(epoch, evaluation)
        ratio = alive_cost(self.regularizer.layers, self.regularizer.alive_counts()) / self.full_cost
        row = {**row, "penalty": round(float(self.penalty_sum) / self.steps_per_epoch, 5), "alive_cost_ratio": round(ratio, 4)}
        return row, f"{text}, penalty {row['penalty']:.4f}, alive {100 * ratio:.1f}% of the cost"
