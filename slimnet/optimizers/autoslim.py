"""Greedy slimming (AutoSlim §3.3): from the largest configuration, repeatedly shrink the unit
whose one-group reduction costs the least on held-out data, down to the floor.

Each candidate narrows one unit, which leaves the network before that unit's convolution
unchanged, and the channels it keeps unchanged up to the next layer that mixes channels. The
evaluator caches the committed configuration's tensors at those points (calibration and
evaluation batches) and runs a candidate from there: BN recalibration and the forward pass
cover only what the candidate changes. No model copies."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal

import torch
from torch import nn

from slimnet.console.progress import Reporter
from slimnet.nn.bn import calibrating, set_training, slim_bns
from slimnet.nn.network import Network
from slimnet.optimizers.trajectory import CostRatio, TrajectoryPoint
from slimnet.parallel.world import SINGLE, World
from slimnet.space.channels import Blueprint, ChannelSpace
from slimnet.space.flops import cost
from slimnet.space.spec import ArchSpec
from slimnet.stats.scoring import calibrated_loss, top1_and_loss

Batches = list[tuple[torch.Tensor, torch.Tensor]]


@dataclass(frozen=True)
class Score:
    accuracy: float  # top-1 %
    loss: float
    calibrated: float = 0.0  # cross-entropy at the best logit scale (scoring.calibrated_loss)


@dataclass(frozen=True)
class Resume:
    """Where a candidate's computation starts: body conv ``conv`` of block ``block``.

    ``sliced``: the tensor fed there is the committed configuration's, cut to the candidate's
    width. That holds when every layer between the narrowed unit's convolution and this point
    acts on each channel separately (BN, activation, depthwise conv, pooling), so the kept
    channels carry exactly the committed values. ``block`` equal to the number of blocks means
    only the head runs.
    """

    block: int
    conv: int = 0
    sliced: bool = False

    def keys(self) -> list[tuple[int, int]]:
        """The cached tensors this start reads: (block, body conv) inputs; conv 0 is the block's input."""
        return [(self.block, 0)] if self.conv == 0 else [(self.block, self.conv), (self.block, 0)]


def resume_point(blueprint: Blueprint, unit: str) -> Resume:
    """The latest point a candidate narrowing ``unit`` must be computed from."""
    index = blueprint.first_block_of()[unit]
    block = blueprint.blocks[index]
    convs = block.convs
    if block.in_unit == unit:
        return Resume(index)
    i = next(k for k, conv in enumerate(convs) if conv.out_unit == unit)
    j = i + 1
    while j < len(convs) and convs[j].depthwise and convs[j].in_unit == unit:
        j += 1  # a depthwise conv keeps channels apart
    if j == len(convs):
        # The unit is the block's output: the next block's input, cut, unless a residual add mixes it in.
        return Resume(index + 1, 0, True) if block.residual != "identity" else Resume(index)
    if block.out_unit == unit or any(conv.out_unit == unit for conv in convs[j:]):
        return Resume(index)
    return Resume(index, j, True)


Key = tuple[int, int]  # (block, body conv) whose input is cached; conv 0: the block's input


class CandidateEvaluator:
    """Scores sub-networks of one supernet on fixed batches, reusing what a candidate leaves unchanged.

    BN statistics per candidate: ``bn="recalibrate"`` averages them over the calibration
    batches (training images) and evaluates in eval mode; ``bn="online"`` normalizes each
    evaluation batch with its own statistics (AutoSlim's large-batch shortcut: half the work,
    sound when batches hold a couple of thousand images).

    A candidate narrows one unit, so it is computed from the latest point that unit changes
    (:func:`resume_point`): the committed configuration's tensors there (calibration and
    evaluation batches) are cached at :meth:`commit`, cut to the candidate's width where the
    layers before act per channel. ``cache_bytes`` bounds the cache; the deepest points are
    cached first since they save the most work per byte. With ``cache_bytes=0`` every
    candidate runs in full from the images (the naive evaluator the benchmark compares against).
    """

    def __init__(
        self,
        network: Network,
        space: ChannelSpace,
        calib: Batches,
        evaluate: Batches,
        cache_bytes: int = 2**30,
        bn: Literal["recalibrate", "online"] = "recalibrate",
        world: World = SINGLE,
    ):
        self.network, self.space = network.eval(), space
        self.modules = list(network.modules())  # for set_training: modes switch twice per candidate
        self.world = world  # ``evaluate`` holds this rank's share; scores sum every rank's
        self.online = bn == "online"
        self.calib_inputs = [] if self.online else [x for x, _ in calib]
        self.eval_batches = evaluate
        self.cache_bytes = cache_bytes
        self.resume = {unit: resume_point(space.blueprint, unit) for unit in space.choices}
        self.cache: dict[Key, tuple[list[torch.Tensor], list[torch.Tensor]]] = {}
        self.committed: dict[str, int] = {}
        self.chosen: set[Key] = set()
        self.evaluations = 0

    def commit(self, config: dict[str, int]) -> Score:
        """Make ``config`` the base and refresh the activation cache.

        A config one unit narrower than the committed one (a greedy step) is computed like its
        candidate, from that unit's resume point; anything else from the images. BN running
        statistics are only kept for the layers a later candidate reads, so after a search the
        network's statistics are not those of any one configuration.
        """
        changed = [unit for unit in config if self.committed and config[unit] != self.committed.get(unit)]
        resume = Resume(0)
        if len(changed) == 1 and config[changed[0]] < self.committed[changed[0]] and self.cache:
            resume = self._start(changed[0])
        else:
            self.chosen = self._keys_to_cache(config)
        self.committed = dict(config)
        self.network.set_channels(config)
        width = config[changed[0]] if len(changed) == 1 else 0
        first = (resume.block, resume.conv)
        later = {key for key in self.chosen if key >= first}
        calib_start, calib_block_in = self._inputs(resume, 0, width)
        eval_start, eval_block_in = self._inputs(resume, 1, width)
        calib = self._calibrate(resume, calib_start, calib_block_in, capture=later)
        end = (len(self.network.blocks), 0)
        evals = self._features(resume, eval_start, eval_block_in, capture=later | {end})
        kept = {key: value for key, value in self.cache.items() if key < first}
        fresh = {key: (_own(calib[key]), _own(evals[key])) for key in later}
        self.cache = {**kept, **fresh}
        return self._evaluate_features(evals[end])

    def score(self, config: dict[str, int], changed_unit: str) -> Score:
        """Score ``config``, which differs from the committed one in ``changed_unit`` only."""
        resume = self._start(changed_unit)
        width = config[changed_unit]
        self.network.set_channels(config)
        try:
            if not self.online:
                start, block_in = self._inputs(resume, 0, width)
                self._calibrate(resume, start, block_in)
            start, block_in = self._inputs(resume, 1, width)
            features = self._features(resume, start, block_in)
        finally:
            self.network.set_channels(self.committed)
        self.evaluations += 1
        return self._evaluate_features(features)

    def _start(self, unit: str) -> Resume:
        """The unit's resume point if its tensors are cached, else the nearest cached block before it."""
        resume = self.resume[unit]
        if all(key in self.cache or key == (0, 0) for key in resume.keys()):
            return resume
        first = self.space.blueprint.first_block_of()[unit]
        cached = [block for block, conv in self.cache if conv == 0 and block <= first]
        return Resume(max(cached) if cached else 0)

    def _cached(self, key: Key, which: int) -> list[torch.Tensor]:
        """Cached inputs at ``key`` of the calibration (0) or evaluation (1) batches; (0, 0) is the images."""
        if key == (0, 0):
            return self.calib_inputs if which == 0 else [x for x, _ in self.eval_batches]
        return self.cache[key][which]

    def _inputs(self, resume: Resume, which: int, width: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """(tensors fed at ``resume``, block inputs for its residual) of calibration (0) or evaluation (1)."""
        start = self._cached((resume.block, resume.conv), which)
        if resume.sliced:
            start = [x[:, :width] for x in start]
        block_in = self._cached((resume.block, 0), which) if resume.conv else []
        return start, block_in

    def _run(self, resume: Resume, inputs: list[torch.Tensor], block_in: list[torch.Tensor], capture: set[Key]):
        """Blocks from ``resume`` on for each batch; the outputs and the captured inputs."""
        captured: dict[Key, list[torch.Tensor]] = {key: [] for key in capture}
        blocks = self.network.blocks
        end = (len(blocks), 0)

        def inner(index: int, start: int) -> dict[int, list] | None:
            convs = range(max(start, 1), len(blocks[index].body))
            return {conv: captured[(index, conv)] for conv in convs if (index, conv) in captured} or None

        for n, x in enumerate(inputs):
            first = resume.block
            if resume.conv:
                x = blocks[first].forward_from(block_in[n], resume.conv, x, capture=inner(first, resume.conv))
                first += 1
            for index in range(first, len(blocks)):
                if (index, 0) in captured:
                    captured[(index, 0)].append(x)
                x = blocks[index].forward_from(x, capture=inner(index, 1))
            if end in captured:
                captured[end].append(x)
        return captured

    @torch.no_grad()
    def _calibrate(
        self, resume: Resume, inputs: list[torch.Tensor], block_in: list[torch.Tensor], capture: set[Key] = frozenset()
    ) -> dict[Key, list[torch.Tensor]]:
        """Recalibrate the BNs from ``resume`` on (the earlier ones keep the committed statistics)."""
        blocks = self.network.blocks
        modules: list[nn.Module] = list(blocks[resume.block + 1 if resume.conv else resume.block :])
        if resume.conv:
            block = blocks[resume.block]
            modules += list(block.body[resume.conv :]) + ([block.shortcut] if block.shortcut is not None else [])
        bns = [bn for module in modules for bn in slim_bns(module)]
        with calibrating(self.modules, bns):
            return self._run(resume, inputs, block_in, set(capture))

    @torch.no_grad()
    def _features(
        self, resume: Resume, inputs: list[torch.Tensor], block_in: list[torch.Tensor], capture: set[Key] = frozenset()
    ) -> list[torch.Tensor] | dict[Key, list[torch.Tensor]]:
        # Online: the blocks normalize with batch statistics (running ones untouched); the head
        # runs in eval mode, so dropout never makes a score random.
        end = (len(self.network.blocks), 0)
        set_training(self.modules, self.online)
        try:
            captured = self._run(resume, inputs, block_in, set(capture) | {end})
        finally:
            set_training(self.modules, False)
        return captured if capture else captured[end]

    @torch.no_grad()
    def _keys_to_cache(self, config: dict[str, int]) -> set[Key]:
        """Deepest points first (they save the most work per byte), until the budget is spent."""
        self.network.set_channels(config)
        images = sum(len(x) for x in self.calib_inputs) + sum(len(y) for _, y in self.eval_batches)
        wanted = {key for resume in self.resume.values() for key in resume.keys()}
        wanted |= {(block, 0) for block in range(1, len(self.network.blocks))}  # fallbacks
        self.network.eval()  # one probe image: batch statistics would not exist at 1x1
        probe = self._run(Resume(0), [self.eval_batches[0][0][:1]], [], wanted)
        budget, chosen = self.cache_bytes, set()
        for key in sorted(wanted, reverse=True):
            size = sum(x.numel() * x.element_size() for x in probe[key]) * images
            if key != (0, 0) and size <= budget:
                chosen.add(key)
                budget -= size
        return chosen

    @torch.no_grad()
    def _evaluate_features(self, features: list[torch.Tensor]) -> Score:
        outputs = [(self.network.head(x), y) for x, (_, y) in zip(features, self.eval_batches)]
        top1, loss = top1_and_loss(outputs, self.world)
        return Score(top1, loss, calibrated_loss(outputs, self.world)[0])


def _own(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    """Cut views made dense, so the cache holds no slice of a wider tensor."""
    return [x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x.contiguous() for x in tensors]


Criterion = Literal["accuracy", "loss", "calibrated"]


def drop(base: Score, candidate: Score, criterion: Criterion) -> float:
    """How much worse ``candidate`` scores than ``base`` (positive: worse) in ``criterion``'s units."""
    if criterion == "accuracy":
        return base.accuracy - candidate.accuracy
    if criterion == "calibrated":
        return candidate.calibrated - base.calibrated
    return candidate.loss - base.loss


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


def scored_point(
    step: int,
    slimmed: str | None,
    config: dict[str, int],
    score: Score,
    evaluations: int,
    *,
    reference: ArchSpec,
    runner_up: str | None = None,
    margin: float | None = None,
) -> TrajectoryPoint:
    """A configuration of ``reference``'s network as a trajectory point: its costs, their ratio to
    the reference's, and its held-out score (rounded as every trajectory records it)."""
    c = cost(reference.blueprint(), config, reference.resolution)
    reference_cost = reference.cost()
    return TrajectoryPoint(
        step=step,
        slimmed=slimmed,
        flops=c.flops,
        params=c.params,
        memory=c.memory,
        accuracy=round(score.accuracy, 4),
        loss=round(score.loss, 6),
        calibrated_loss=round(score.calibrated, 6),
        evaluations=evaluations,
        ratio=CostRatio(flops=c.flops / reference_cost.flops, params=c.params / reference_cost.params),
        channels=dict(config),
        runner_up=runner_up,
        margin=None if margin is None else round(margin, 9),
    )


def greedy_slim(
    evaluator: CandidateEvaluator,
    *,
    reference: ArchSpec,
    criterion: Criterion = "accuracy",
    per_flop: bool = False,
    floor_flops: int = 0,
    report: Reporter | None = None,
    max_steps: int | None = None,
    resume: list[TrajectoryPoint] | None = None,
    on_step: Callable[[list[TrajectoryPoint]], None] | None = None,
) -> list[TrajectoryPoint]:
    """The whole greedy trajectory, from the largest configuration to the floor.

    ``reference`` is the uniform network the supernet was built around: it sets the input
    resolution and the denominator of every point's cost ratio.

    The candidate with the smallest drop (optionally per FLOP saved) wins; ties go to the lower
    held-out loss (accuracy moves in whole images, so it ties often), then to the larger FLOPs
    saving, then to the earlier unit, so the same inputs give the same path. Each point records
    the runner-up and its margin, so a reader sees how close every decision was.

    ``resume``: the first points of an interrupted search, which goes on from its last. Their
    configurations are committed again in turn, as the search committed them, without scoring
    a candidate: the evaluator's cache and base score come out as the unbroken search's, bit
    for bit (one commit of the last configuration from the images rounds differently).
    ``on_step`` gets the trajectory so far after every committed step (to checkpoint it).
    """
    space = evaluator.space
    blueprint = space.blueprint
    resolution = reference.resolution
    config = space.maximum
    base = evaluator.commit(config)

    def point(
        step: int, unit: str | None, config: dict[str, int], base: Score, evaluations: int, runner_up=None, margin=None
    ) -> TrajectoryPoint:
        return scored_point(step, unit, config, base, evaluations, reference=reference, runner_up=runner_up, margin=margin)

    trajectory = [point(0, None, config, base, 0)]
    if resume:
        for done in resume[1:]:
            base = evaluator.commit(dict(done.channels))
        evaluator.evaluations += sum(done.evaluations for done in resume)
        trajectory, config = list(resume), dict(resume[-1].channels)
    units = list(space.choices)
    total_steps = sum(len(c) - 1 for c in space.choices.values())
    if report is not None:
        report.start("greedy slimming", total_steps)
        report.advance(len(trajectory) - 1)
    current_flops = cost(blueprint, config, resolution).flops
    step = trajectory[-1].step
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
        if on_step is not None:
            on_step(trajectory)
        if report is not None:
            report.advance()
    return trajectory
