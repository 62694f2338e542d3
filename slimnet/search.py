"""Greedy slimming (AutoSlim §3.3): from the largest configuration, repeatedly shrink the unit
whose one-group reduction costs the least on held-out data, down to the floor.

Each candidate touches the network from the first block that uses its unit onwards, so the
evaluator caches every block's input (calibration and evaluation batches) for the committed
configuration and runs a candidate from the nearest cached block: BN recalibration and the
forward pass cover only what the candidate changes. No model copies.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict

from slimnet import atomic
from slimnet.arch import ArchSpec
from slimnet.bn import recalibrate
from slimnet.errors import SlimnetError
from slimnet.flops import cost
from slimnet.nn.network import Network
from slimnet.progress import Reporter
from slimnet.scoring import top1_and_loss
from slimnet.space import ChannelSpace

Batches = list[tuple[torch.Tensor, torch.Tensor]]


class CostRatio(BaseModel):
    """A configuration's cost relative to the uniform network the supernet was built around."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    flops: float
    params: float


class TrajectoryPoint(BaseModel):
    """One greedy step: the configuration it committed, its cost and its held-out score."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    step: int
    slimmed: str | None  # the unit shrunk at this step (None for the starting point)
    flops: int
    params: int
    memory: int
    accuracy: float  # top-1 % on the search's held-out images
    loss: float
    evaluations: int  # candidates scored to choose this step
    ratio: CostRatio
    channels: dict[str, int]
    # How close the decision was: the second-best unit and how much worse its ranking value was
    # (criterion units, or per relative FLOPs saved with per_flop). None where one candidate was left.
    runner_up: str | None = None
    margin: float | None = None


class Trajectory(BaseModel):
    """The whole greedy path of a search, largest configuration first, and its reference network."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    reference: ArchSpec
    points: list[TrajectoryPoint]

    def save(self, path: Path) -> None:
        atomic.write_text(path, self.model_dump_json(indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> "Trajectory":
        path = Path(path)
        if not path.is_file():
            raise SlimnetError(f"{path} not found: run `dvc repro search` first")
        try:
            return cls.model_validate_json(path.read_text())
        except ValueError as error:
            raise SlimnetError(
                f"{path} is not a slimnet trajectory ({str(error).splitlines()[0]}): re-run the search stage"
            ) from None


@dataclass(frozen=True)
class Score:
    accuracy: float  # top-1 %
    loss: float


class CandidateEvaluator:
    """Scores sub-networks of one supernet on fixed batches, reusing unchanged prefixes.

    BN statistics per candidate: ``bn="recalibrate"`` averages them over the calibration
    batches (training images) and evaluates in eval mode; ``bn="online"`` normalizes each
    evaluation batch with its own statistics (AutoSlim's large-batch shortcut: half the work,
    sound when batches hold a couple of thousand images).

    ``cache_bytes`` bounds the cached activations; the deepest blocks are cached first since
    they save the most work per byte. With ``cache_bytes=0`` every candidate runs in full
    (the naive evaluator the benchmark compares against).
    """

    def __init__(
        self,
        network: Network,
        space: ChannelSpace,
        calib: Batches,
        evaluate: Batches,
        cache_bytes: int = 2**30,
        bn: Literal["recalibrate", "online"] = "recalibrate",
    ):
        self.network, self.space = network.eval(), space
        self.online = bn == "online"
        self.calib_inputs = [] if self.online else [x for x, _ in calib]
        self.eval_batches = evaluate
        self.cache_bytes = cache_bytes
        self.first_block = space.blueprint.first_block_of()
        self.cache: dict[int, tuple[list[torch.Tensor], list[torch.Tensor]]] = {}
        self.committed: dict[str, int] = {}
        self.evaluations = 0

    def commit(self, config: dict[str, int]) -> Score:
        """Make ``config`` the base: recalibrate it in full and refresh the activation cache."""
        self.committed = dict(config)
        self.network.set_channels(config)
        chosen = self._blocks_to_cache()
        calib = recalibrate(self.network, self.calib_inputs, capture=chosen)
        evals = self._forward_capturing(chosen)
        self.cache = {index: (calib[index], evals[index]) for index in chosen}
        return self._evaluate_features(evals[len(self.network.blocks)])

    def score(self, config: dict[str, int], changed_unit: str) -> Score:
        """Score ``config``, which differs from the committed one in ``changed_unit`` only."""
        start = self._cached_start(self.first_block[changed_unit])
        calib_in, eval_in = self.cache.get(start, (self.calib_inputs, [x for x, _ in self.eval_batches]))
        self.network.set_channels(config)
        if not self.online:
            recalibrate(self.network, calib_in, start=start)
        score = self._evaluate(eval_in, start)
        self.network.set_channels(self.committed)
        self.evaluations += 1
        return score

    def _cached_start(self, block: int) -> int:
        cached = [b for b in self.cache if b <= block]
        return max(cached) if cached else 0

    @torch.no_grad()
    def _evaluate(self, inputs: list[torch.Tensor], start: int) -> Score:
        # Online: the blocks normalize with batch statistics (running ones untouched); the head
        # runs in eval mode, so dropout never makes a score random.
        self.network.train(self.online)
        try:
            features = [self.network.features(x, start) for x in inputs]
        finally:
            self.network.eval()
        return self._evaluate_features(features)

    @torch.no_grad()
    def _forward_capturing(self, chosen: set[int]) -> dict[int, list[torch.Tensor]]:
        """Eval-mode forward of the committed config; inputs of the chosen blocks and the features."""
        captured: dict[int, list[torch.Tensor]] = {index: [] for index in chosen}
        features = []
        self.network.train(self.online)
        for x, _ in self.eval_batches:
            for index, block in enumerate(self.network.blocks):
                if index in captured:
                    captured[index].append(x)
                x = block(x)
            features.append(x)
        self.network.eval()
        captured[len(self.network.blocks)] = features
        return captured

    @torch.no_grad()
    def _blocks_to_cache(self) -> set[int]:
        """Deepest blocks first (they save the most work per byte), until the budget is spent."""
        images = sum(len(x) for x in self.calib_inputs) + sum(len(y) for _, y in self.eval_batches)
        x = self.eval_batches[0][0][:1]
        per_image = []
        for block in self.network.blocks:
            per_image.append(x.numel() * x.element_size())
            x = block(x)
        budget, chosen = self.cache_bytes, set()
        for index in range(len(per_image) - 1, 0, -1):
            if per_image[index] * images <= budget:
                chosen.add(index)
                budget -= per_image[index] * images
        return chosen

    @torch.no_grad()
    def _evaluate_features(self, features: list[torch.Tensor]) -> Score:
        return Score(*top1_and_loss((self.network.head(x), y) for x, (_, y) in zip(features, self.eval_batches)))


def drop(base: Score, candidate: Score, criterion: Literal["accuracy", "loss"]) -> float:
    return base.accuracy - candidate.accuracy if criterion == "accuracy" else candidate.loss - base.loss


def rank_value(drop_value: float, saved_fraction: float, per_flop: bool) -> float:
    """What a candidate is ranked on (smaller is better); unrounded, so no scale collapses to a tie.

    With ``per_flop`` a loss is divided by the fraction of the current FLOPs the candidate saves
    (relative, so ImageNet-scale counts do not shrink every value towards zero); a gain (negative
    drop) is multiplied by it instead, so a bigger saving still ranks better rather than worse.
    """
    if not per_flop:
        return drop_value
    saved_fraction = max(saved_fraction, 1e-12)
    return drop_value / saved_fraction if drop_value > 0 else drop_value * saved_fraction


def greedy_slim(
    evaluator: CandidateEvaluator,
    *,
    reference: ArchSpec,
    criterion: Literal["accuracy", "loss"] = "accuracy",
    per_flop: bool = False,
    floor_flops: int = 0,
    report: Reporter | None = None,
    max_steps: int | None = None,
) -> list[TrajectoryPoint]:
    """The whole greedy trajectory, from the largest configuration to the floor.

    ``reference`` is the uniform network the supernet was built around: it sets the input
    resolution and the denominator of every point's cost ratio.

    The candidate with the smallest drop (optionally per FLOP saved) wins; ties go to the lower
    held-out loss (accuracy moves in whole images, so it ties often), then to the larger FLOPs
    saving, then to the earlier unit, so the same inputs give the same path. Each point records
    the runner-up and its margin, so a reader sees how close every decision was.
    """
    space = evaluator.space
    blueprint = space.blueprint
    resolution = reference.resolution
    reference_cost = reference.cost()
    config = space.maximum
    base = evaluator.commit(config)

    def point(
        step: int, unit: str | None, config: dict[str, int], base: Score, evaluations: int, runner_up=None, margin=None
    ) -> TrajectoryPoint:
        c = cost(blueprint, config, resolution)
        return TrajectoryPoint(
            step=step,
            slimmed=unit,
            flops=c.flops,
            params=c.params,
            memory=c.memory,
            accuracy=round(base.accuracy, 4),
            loss=round(base.loss, 6),
            evaluations=evaluations,
            ratio=CostRatio(flops=c.flops / reference_cost.flops, params=c.params / reference_cost.params),
            channels=dict(config),
            runner_up=runner_up,
            margin=None if margin is None else round(margin, 9),
        )

    trajectory = [point(0, None, config, base, 0)]
    units = list(space.choices)
    total_steps = sum(len(c) - 1 for c in space.choices.values())
    if report is not None:
        report.start("greedy slimming", total_steps)
    current_flops = cost(blueprint, config, resolution).flops
    step = 0
    while current_flops > floor_flops and (max_steps is None or step < max_steps):
        ranked = []
        for order, unit in enumerate(units):
            smaller = space.smaller(config, unit)
            if smaller is None:
                continue
            candidate = {**config, unit: smaller}
            saved = current_flops - cost(blueprint, candidate, resolution).flops
            score = evaluator.score(candidate, unit)
            value = rank_value(drop(base, score, criterion), saved / current_flops, per_flop)
            ranked.append(((value, score.loss, -saved, order), unit, candidate))
        if not ranked:
            break  # every unit at its minimum
        ranked.sort(key=lambda entry: entry[0])
        step += 1
        (best_key, unit, config) = ranked[0]
        runner_up, margin = (ranked[1][1], ranked[1][0][0] - best_key[0]) if len(ranked) > 1 else (None, None)
        base = evaluator.commit(config)
        current_flops = cost(blueprint, config, resolution).flops
        trajectory.append(point(step, unit, config, base, len(ranked), runner_up, margin))
        if report is not None:
            report.advance()
    return trajectory
