"""DMCP's search training (Guo et al., CVPR 2020; the official code, Zx55/dmcp): starting from
the trained slimmable supernet (the official run's first half, plain sandwich training), every
step is a weight step and then an architecture step.

- Weight step: the sandwich rule with in-place distillation (training.sandwich), its random
  configurations drawn uniformly with probability exp(-t/T) over the phase's steps and else
  from the chains (the official "scheduled random", whose 0.9999 per 10 steps reaches about
  e^-1 at the end of its ImageNet run; here the same end point whatever the run's length).
- Architecture step: the largest configuration, each unit's channels scaled by their marginal
  keep-probabilities (dmcp_chains.ChannelScaling), on the same batch; the task loss plus
  ``cost_weight`` times the piecewise-log budget loss of the expected cost, one per budget
  (FLOPs, params, memory of the projected network; latency predicted for the full network the
  widths carry to); a step on the chain logits alone.

Resumable like every training (training.loop): the chains, their optimizer and the step count
ride in the checkpoint.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F

from slimnet.console.progress import Reporter
from slimnet.nn.network import Network
from slimnet.optimizers.dmcp_chains import ChannelScaling, CostTerm, MarkovChains, budget_logit, budget_loss
from slimnet.parallel.world import SINGLE, World
from slimnet.space.channels import ChannelSpace
from slimnet.training.checkpoint import Checkpoints
from slimnet.training.distributed import GradientReducer, loss_share
from slimnet.training.loop import Loop
from slimnet.training.recipe import Recipe
from slimnet.training.sandwich import SandwichSteps


def arch_optimizer(parameters: list[torch.nn.Parameter], lr: float) -> torch.optim.Optimizer:
    """Adam, where the official code runs SGD (lr 0.5, momentum 0.9) over ~10^5 ImageNet steps: the
    log budget loss's gradient grows without bound at the band's edges, and in the few hundred
    steps of a run here SGD either crawled or saturated every chain (docs/optimizers.md)."""
    return torch.optim.Adam(parameters, lr=lr, betas=(0.5, 0.999))


class ChainSampler:
    """The space as sandwich_step sees it (largest, smallest, random draws), its random draws
    from the chains with probability 1 - ``uniform``."""

    def __init__(self, space: ChannelSpace, chains: MarkovChains):
        self.space, self.chains = space, chains
        self.blueprint, self.choices = space.blueprint, space.choices
        self.uniform = 1.0

    @property
    def maximum(self) -> dict[str, int]:
        return self.space.maximum

    @property
    def minimum(self) -> dict[str, int]:
        return self.space.minimum

    def sample(self, generator: torch.Generator) -> dict[str, int]:
        if float(torch.rand((), generator=generator)) < self.uniform:
            return self.space.sample(generator)
        return self.chains.sample(generator)


def train_dmcp(
    network: Network,
    space: ChannelSpace,
    terms: list[CostTerm],
    train_set,
    calib_batches: list[tuple[torch.Tensor, torch.Tensor]],
    eval_batches: list[tuple[torch.Tensor, torch.Tensor]],
    *,
    recipe: Recipe,
    samples: int,
    resolution: int,
    cost_weight: float,
    arch_lr: float,
    start: str,
    checkpoints: Checkpoints,
    device: torch.device,
    report: Reporter,
    world: World = SINGLE,
    on_epoch: Callable[[dict], None] | None = None,
) -> tuple[MarkovChains, list[dict], dict]:
    """Train the supernet ``network`` (in place) and the chains towards every budget's ``terms``,
    the chains starting at ``start`` ("budget": :func:`budget_logit`; "half": every transition
    0.5, the official code's start); returns the chains, the curves and a summary with the derived configuration and its costs."""
    torch.manual_seed(recipe.seed)
    chains = MarkovChains(space.choices).to(device)
    if start == "budget":
        with torch.no_grad():
            chains.logits.fill_(budget_logit(chains, terms))
    loop = Loop(network, train_set, recipe=recipe, checkpoints=checkpoints, report=report, name="dmcp", world=world)
    steps = DMCPSteps(
        network,
        ChainSampler(space, chains),
        calib_batches,
        eval_batches,
        recipe=recipe,
        loop=loop,
        samples=samples,
        resolution=resolution,
        reducer=GradientReducer(list(network.parameters()), world),
        device=device,
        world=world,
        chains=chains,
        terms=terms,
        cost_weight=cost_weight,
        arch_lr=arch_lr,
    )
    curves, seconds = loop.run(steps, on_epoch)
    steps.scaling.remove()
    config = chains.expected_config()
    expected = {t.metric: float(steps.expected(t)) for t in terms}
    summary = {
        "channels": config,
        "targets": {t.metric: _rounded(t.metric, t.target) for t in terms},
        "expected": {t.metric: _rounded(t.metric, expected[t.metric]) for t in terms},
        "derived": {t.metric: _rounded(t.metric, float(t.of(config)), exact=True) for t in terms},
        # Where the chains ended, over each target: the budget loss aims at [0.95, 1].
        "reached": {t.metric: round(expected[t.metric] / t.target, 4) for t in terms},
        "arch_steps": steps.step_index,
        "max_acc": curves[-1]["max_acc"],
        "min_acc": curves[-1]["min_acc"],
        "train_flops": steps.train_flops,
        "train_seconds": round(seconds, 2),
    }
    network.set_channels(space.maximum)
    return chains, curves, summary


def unconverged(reached: dict[str, float], arch_steps: int, slack: float = 0.03) -> str | None:
    """A warning when the chains ended outside the budget loss's band (give or take ``slack``):
    too few architecture steps to move them from their start, or a loss that pulled them out."""
    off = {m: r for m, r in reached.items() if not 0.95 - slack <= r <= 1.0 + slack}
    if not off:
        return None
    shown = ", ".join(f"{100 * r:.1f}% of the {m} target" for m, r in off.items())
    return (
        f"warning: dmcp: the chains ended at {shown} after {arch_steps} architecture steps (the cost loss aims "
        "at 95-100%): raise dmcp.epochs or dmcp.arch_lr, or give the projected problem more images"
    )


def _rounded(metric: str, value: float, exact: bool = False) -> float | int:
    """Counts to one decimal (a decided configuration's: whole), milliseconds to 10 ns."""
    if metric == "latency":
        return round(value, 5)
    return round(value) if exact else round(value, 1)


class DMCPSteps(SandwichSteps):
    """A sandwich weight step, then an architecture step on the same batch (module docstring)."""

    @property
    def headline(self) -> tuple[str, ...]:
        return ("max_acc", "min_acc", *(f"expected_{term.metric}_ratio" for term in self.terms))

    def __init__(
        self,
        *args,
        chains: MarkovChains,
        terms: list[CostTerm],
        cost_weight: float,
        arch_lr: float,
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        self.chains, self.terms, self.cost_weight = chains, terms, cost_weight
        self.total_steps = self.recipe.epochs * self.steps_per_epoch
        self.step_index = 0
        self.scaling = ChannelScaling(self.network)
        self.weights = [p for p in self.network.parameters() if p.requires_grad]
        self.arch_optimizer = arch_optimizer(list(chains.parameters()), arch_lr)
        self.arch_reducer = GradientReducer(list(chains.parameters()), self.world)

    def totals(self) -> dict:
        return {
            **super().totals(),
            "chains": self.chains.state_dict(),
            "arch_optimizer": self.arch_optimizer.state_dict(),
            "step_index": self.step_index,
        }

    def restore_totals(self, state: dict) -> None:
        super().restore_totals(state)
        self.chains.load_state_dict(state["chains"])
        self.arch_optimizer.load_state_dict(state["arch_optimizer"])
        self.step_index = state["step_index"]

    def begin_epoch(self) -> None:
        super().begin_epoch()
        self.cost_loss_sum = 0.0

    def step(self, optimizer: torch.optim.Optimizer, images: torch.Tensor, labels: torch.Tensor) -> None:
        self.space.uniform = math.exp(-self.step_index / self.total_steps)
        super().step(optimizer, images, labels)
        self.arch_step(images, labels)
        self.step_index += 1

    def arch_step(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        self.network.set_channels(self.space.maximum)
        for p in self.weights:
            p.requires_grad_(False)  # the task loss's gradient reaches the logits only
        self.scaling.masks = self.chains.masks()
        try:
            with torch.autocast(images.device.type, dtype=torch.bfloat16, enabled=self.autocast):
                logits = self.network(images)
            task = F.cross_entropy(logits.float(), labels, label_smoothing=self.recipe.label_smoothing)
            expected = self.chains.expected_channels()
            cost = self.cost_weight * sum(budget_loss(term.of(expected), term.target) for term in self.terms)
            share = loss_share(len(labels), self.recipe.batch_size)
            self.arch_optimizer.zero_grad(set_to_none=True)
            ((task + cost) * share if share != 1.0 else task + cost).backward()
            self.arch_reducer.reduce()
            self.arch_optimizer.step()
        finally:
            self.scaling.masks = None
            for p in self.weights:
                p.requires_grad_(True)
        self.cost_loss_sum += float(cost.detach())
        # forward + backward to the activations ~ 3x the largest configuration's forward (an upper bound)
        self.train_flops += 3 * self.recipe.batch_size * self.config_flops(self.space.maximum)

    @torch.no_grad()
    def expected(self, term: CostTerm) -> torch.Tensor:
        return term.of(self.chains.expected_channels())

    def record(self, epoch: int, evaluation) -> tuple[dict, str]:
        row, text = super().record(epoch, evaluation)
        config = self.chains.expected_config()
        row = {**row, "cost_loss": round(self.cost_loss_sum / self.steps_per_epoch, 5)}
        for term in self.terms:
            row[f"expected_{term.metric}_ratio"] = round(float(self.expected(term)) / term.target, 4)
            row[f"derived_{term.metric}_ratio"] = round(float(term.of(config)) / term.target, 4)
        shown = ", ".join(
            f"expected {m} {100 * row[f'expected_{m}_ratio']:.1f}% of the target (derived widths "
            f"{100 * row[f'derived_{m}_ratio']:.1f}%)"
            for m in (term.metric for term in self.terms)
        )
        return row, f"{text}, {shown}"
