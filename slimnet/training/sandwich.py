"""Slimmable supernet training: the sandwich rule with in-place distillation (AutoSlim §3.2).

Every step runs the largest configuration on the labels, then the smallest and ``samples``
random ones on the largest's detached soft predictions; gradients add up and the optimizer
steps once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

from slimnet.console.errors import SlimnetError
from slimnet.console.progress import Reporter
from slimnet.nn.bn import recalibrate
from slimnet.nn.network import Network
from slimnet.nn.sync_bn import use_sync_bn
from slimnet.parallel.world import SINGLE, World
from slimnet.space.channels import ChannelSpace
from slimnet.space.flops import flops as count_flops
from slimnet.space.spec import ArchSpec
from slimnet.stats.scoring import accuracy
from slimnet.training.checkpoint import Checkpoints, fingerprint
from slimnet.training.distributed import GradientReducer, loss_share
from slimnet.training.loop import Loop, Steps
from slimnet.training.no_network import no_network_reason
from slimnet.training.recipe import Recipe


def build_space(reference: ArchSpec, *, min_width: float, max_width: float, groups: int, divisor: int) -> ChannelSpace:
    """The supernet's configurations around the (projected) reference network."""
    return ChannelSpace.around(reference.blueprint(), min_width, max_width, groups, divisor)


def check_config(space: ChannelSpace, config: dict[str, int]) -> dict[str, int]:
    """A configuration the supernet can run: every unit present, each count one of its choices."""
    problem = space.problems(config)
    if problem is not None:
        raise SlimnetError(f"not a configuration of this supernet: {problem}")
    return config


def build_supernet(space: ChannelSpace) -> Network:
    return Network(space.blueprint, space.maximum, slimmable=True)


def distill_loss(logits: torch.Tensor, teacher_probs: torch.Tensor) -> torch.Tensor:
    return -(teacher_probs * F.log_softmax(logits.float(), dim=-1)).sum(dim=-1).mean()


def sandwich_step(
    network: Network,
    space: ChannelSpace,
    optimizer: torch.optim.Optimizer,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    samples: int,
    label_smoothing: float,
    generator: torch.Generator,
    autocast: bool = False,
    reducer: GradientReducer | None = None,
    global_batch: int | None = None,
) -> tuple[float, list[dict[str, int]]]:
    """One optimizer step over max, min and ``samples`` random configs; returns the max config's loss.

    Data-parallel: ``images`` are this rank's share of a ``global_batch``; every rank draws the
    same configs from the same ``generator``; the configs' gradients add up locally and
    ``reducer`` sums them over ranks once, before the step.
    """
    share = loss_share(len(labels), global_batch or len(labels))
    configs = [space.maximum, space.minimum] + [space.sample(generator) for _ in range(samples)]
    optimizer.zero_grad(set_to_none=True)
    network.train()
    teacher = None
    max_loss = 0.0
    for index, config in enumerate(configs):
        network.set_channels(config)
        with torch.autocast(images.device.type, dtype=torch.bfloat16, enabled=autocast):
            logits = network(images)
        if index == 0:
            loss = F.cross_entropy(logits.float(), labels, label_smoothing=label_smoothing)
            teacher = F.softmax(logits.detach().float(), dim=-1)
            max_loss = loss.detach()
        else:
            loss = distill_loss(logits, teacher)
        (loss if share == 1.0 else loss * share).backward()
    if reducer is not None:
        (max_loss,) = reducer.reduce(max_loss * share)
    optimizer.step()
    return float(max_loss), configs


@torch.no_grad()
def evaluate_config(
    network: Network,
    config: dict[str, int],
    calib_batches: list[tuple[torch.Tensor, torch.Tensor]],
    eval_batches: list[tuple[torch.Tensor, torch.Tensor]],
    world: World = SINGLE,
) -> tuple[float, float]:
    """Top-1 accuracy (%) and mean loss of one sub-network with recalibrated BN.

    Every rank recalibrates on all of ``calib_batches``; ``eval_batches`` are this rank's share.
    """
    network.set_channels(config)
    recalibrate(network, (x for x, _ in calib_batches))
    return accuracy(network, eval_batches, world)


def train_supernet(
    space: ChannelSpace,
    train_set,
    calib_batches: list[tuple[torch.Tensor, torch.Tensor]],
    eval_batches: list[tuple[torch.Tensor, torch.Tensor]],
    *,
    recipe: Recipe,
    samples: int,
    resolution: int,
    checkpoints: Checkpoints,
    device: torch.device,
    report: Reporter,
    on_epoch: Callable[[dict], None] | None = None,
    world: World = SINGLE,
    sync_bn: bool = False,
    dropout: float | None = None,
) -> tuple[Network, list[dict], dict]:
    """Train the supernet, resuming from the last checkpoint; returns (network, curves, summary).

    ``dropout`` replaces the architecture's dropout before the classifier (None keeps it): with
    it, the teacher's soft targets and every student see independent masks in one step.

    With several ranks (``world``), each takes its share of every global batch of
    ``recipe.batch_size`` and of ``eval_batches``; rank 0 alone saves checkpoints.
    ``sync_bn``: batch statistics over the global batch instead of each rank's share.
    """
    torch.manual_seed(recipe.seed)
    network = build_supernet(space).to(device, memory_format=torch.channels_last)
    if dropout is not None:
        network.dropout = torch.nn.Dropout(dropout) if dropout > 0 else torch.nn.Identity()
    if sync_bn:
        use_sync_bn(network, world)
    reducer = GradientReducer(list(network.parameters()), world)
    loop = Loop(
        network,
        train_set,
        recipe=recipe,
        checkpoints=checkpoints,
        report=report,
        name="supernet",
        world=world,
        data_seed=recipe.seed + 1,
    )
    steps = SandwichSteps(
        network,
        space,
        calib_batches,
        eval_batches,
        recipe=recipe,
        loop=loop,
        samples=samples,
        resolution=resolution,
        reducer=reducer,
        device=device,
        world=world,
    )
    curves, seconds = loop.run(steps, on_epoch)
    summary = {
        "max_acc": curves[-1]["max_acc"],
        "min_acc": curves[-1]["min_acc"],
        "train_flops": steps.train_flops,
        "train_seconds": round(seconds, 2),
        "max_flops": steps.config_flops(space.maximum),
        "min_flops": steps.config_flops(space.minimum),
    }
    if world.size > 1:
        summary["allreduce_seconds"] = round(reducer.seconds, 2)
    network.set_channels(space.maximum)
    return network, curves, summary


class SandwichSteps(Steps):
    """The sandwich rule's step; the configurations come from a generator of their own
    (``recipe.seed``, checkpointed as ``generator``), the data order from ``recipe.seed + 1``.
    Counts the training multiply-accumulates (``train_flops``), which a resumed run continues."""

    headline = ("max_acc", "min_acc")

    def __init__(
        self,
        network: Network,
        space: ChannelSpace,
        calib_batches: list[tuple[torch.Tensor, torch.Tensor]],
        eval_batches: list[tuple[torch.Tensor, torch.Tensor]],
        *,
        recipe: Recipe,
        loop: Loop,
        samples: int,
        resolution: int,
        reducer: GradientReducer,
        device: torch.device,
        world: World,
    ):
        self.network, self.space, self.calib_batches, self.eval_batches = network, space, calib_batches, eval_batches
        self.recipe, self.steps_per_epoch, self.samples, self.resolution = recipe, loop.steps_per_epoch, samples, resolution
        self.reducer, self.world = reducer, world
        self.autocast = device.type == "cuda"
        self.generators = {"generator": torch.Generator().manual_seed(recipe.seed)}
        self.train_flops = 0
        self._flops: dict[tuple, int] = {}

    def config_flops(self, config: dict[str, int]) -> int:
        key = tuple(config.values())
        if key not in self._flops:
            self._flops[key] = count_flops(self.space.blueprint, config, self.resolution)
        return self._flops[key]

    def totals(self) -> dict:
        return {"train_flops": self.train_flops}

    def restore_totals(self, state: dict) -> None:
        self.train_flops = state["train_flops"]

    def begin_epoch(self) -> None:
        self.loss_sum = 0.0

    def step(self, optimizer: torch.optim.Optimizer, images: torch.Tensor, labels: torch.Tensor) -> None:
        loss, configs = sandwich_step(
            self.network,
            self.space,
            optimizer,
            images,
            labels,
            samples=self.samples,
            label_smoothing=self.recipe.label_smoothing,
            generator=self.generators["generator"],
            autocast=self.autocast,
            reducer=self.reducer,
            global_batch=self.recipe.batch_size,
        )
        self.loss_sum += loss
        # forward + backward ~ 3x the forward multiply-accumulates (of the whole global batch)
        self.train_flops += 3 * self.recipe.batch_size * sum(self.config_flops(c) for c in configs)

    def evaluate(self) -> tuple[tuple[float, float], tuple[float, float]]:
        space, world = self.space, self.world
        largest = evaluate_config(self.network, space.maximum, self.calib_batches, self.eval_batches, world)
        smallest = evaluate_config(self.network, space.minimum, self.calib_batches, self.eval_batches, world)
        return largest, smallest

    def record(self, epoch: int, evaluation) -> tuple[dict, str]:
        (max_acc, max_loss), (min_acc, min_loss) = evaluation
        row = {
            "epoch": epoch + 1,
            "train_loss": round(self.loss_sum / self.steps_per_epoch, 5),
            "max_acc": round(max_acc, 3),
            "min_acc": round(min_acc, 3),
            "max_loss": round(max_loss, 5),
            "min_loss": round(min_loss, 5),
        }
        return row, f"loss {row['train_loss']:.4f}, val top-1 max {max_acc:.2f}% min {min_acc:.2f}%"


def supernet_key(
    reference: ArchSpec, space: ChannelSpace, recipe: Recipe, samples: int, train_size: int, dropout: float | None = None
) -> str:
    return fingerprint(
        {
            "reference": reference.model_dump(mode="json"),
            "choices": space.choices,
            "recipe": recipe.recipe_fields(),
            "samples": samples,
            "train": train_size,
            **({} if dropout is None else {"dropout": dropout}),
        }
    )


def save_supernet_file(path: Path, network: Network, reference: ArchSpec, space: ChannelSpace, **extra) -> None:
    """A network whose channel prefixes are its sub-networks (the supernet; MorphNet's network,
    its channels sorted by score), with the space it runs and ``extra`` records."""
    from slimnet import atomic

    state = {k: v.detach().cpu() for k, v in network.state_dict().items()}
    atomic.save_torch(path, {"model": state, "reference": reference.model_dump(mode="json"), "choices": space.choices, **extra})


def read_network_file(path: Path) -> dict:
    """The saved file of an optimizer's network (supernet, MorphNet's or DMCP's), read once."""
    if not Path(path).is_file():
        raise SlimnetError(f"{path} not found: run `dvc repro supernet` first")
    if (reason := no_network_reason(path)) is not None:
        raise SlimnetError(f"{path} holds no network ({reason}): read the selected optimizer's network instead")
    return torch.load(path, map_location="cpu", weights_only=False)


def load_supernet_file(
    path: Path, device: torch.device | str = "cpu", blob: dict | None = None
) -> tuple[Network, ArchSpec, ChannelSpace]:
    """The network a file holds (``blob``: the file already read), its reference and channel space."""
    blob = read_network_file(path) if blob is None else blob
    reference = ArchSpec.model_validate(blob["reference"])
    space = ChannelSpace(reference.blueprint(), {u: list(c) for u, c in blob["choices"].items()})
    network = build_supernet(space)
    network.load_state_dict(blob["model"])
    return network.to(device, memory_format=torch.channels_last).eval(), reference, space


def load_scores(path: Path, blob: dict) -> dict[str, list[float]]:
    """The per-channel scores a MorphNet network file holds (each unit's, highest first)."""
    if "scores" not in blob:
        raise SlimnetError(f"{path} holds no channel scores: it is not a MorphNet network (re-run `dvc repro morphnet`)")
    return blob["scores"]


def load_decided_channels(path: Path, blob: dict) -> dict[str, int]:
    """The widths a DMCP network file holds (its expected channels, rounded to the choices)."""
    if blob.get("method") != "dmcp":
        raise SlimnetError(f"{path} holds no DMCP widths: it is not a DMCP network (re-run `dvc repro dmcp`)")
    return dict(blob["channels"])
