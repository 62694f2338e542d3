"""MorphNet's shrink read at every threshold: a trajectory from the largest configuration to
the floor, each point the channels scoring above one threshold (at least each unit's
minimum), scored on the held-out images like a greedy step. extrapolate then picks the point
for the budget and expands it with one multiplier, as for AutoSlim."""

from __future__ import annotations

from slimnet.console.progress import Reporter
from slimnet.optimizers.autoslim import CandidateEvaluator, Score, scored_point
from slimnet.optimizers.trajectory import TrajectoryPoint
from slimnet.space.flops import cost
from slimnet.space.spec import ArchSpec

STEP = 0.01  # a new point once the FLOPs fell by 1% of the largest configuration's: ~80 points to a 0.2 floor


def counts_above(scores: dict[str, list[float]], threshold: float, minimum: dict[str, int]) -> dict[str, int]:
    """Channels per unit scoring above ``threshold``, never below the unit's minimum."""
    return {unit: max(minimum[unit], sum(1 for value in values if value > threshold)) for unit, values in scores.items()}


def threshold_trajectory(
    evaluator: CandidateEvaluator,
    scores: dict[str, list[float]],
    *,
    reference: ArchSpec,
    floor_flops: int,
    step: float = STEP,
    report: Reporter | None = None,
) -> list[TrajectoryPoint]:
    """Points at rising thresholds, each at least ``step`` of the largest FLOPs below the last,
    down to the first at or below ``floor_flops`` (or every unit at its minimum)."""
    space = evaluator.space
    blueprint, resolution = space.blueprint, reference.resolution
    minimum = space.minimum

    def point(index: int, config: dict[str, int], previous: dict[str, int] | None, score: Score) -> TrajectoryPoint:
        shrunk = None if previous is None else ",".join(u for u in config if config[u] < previous[u])
        return scored_point(index, shrunk, config, score, 0 if previous is None else 1, reference=reference)

    config = space.maximum
    largest = cost(blueprint, config, resolution).flops
    trajectory = [point(0, config, None, evaluator.commit(config))]
    thresholds = sorted({value for values in scores.values() for value in values})
    if report is not None:
        report.start("threshold sweep", len(thresholds))
    last_flops = largest
    for threshold in thresholds:
        if report is not None:
            report.advance()
        candidate = counts_above(scores, threshold, minimum)
        flops = cost(blueprint, candidate, resolution).flops
        at_floor = flops <= floor_flops or candidate == minimum
        if last_flops - flops < step * largest and not (at_floor and flops < last_flops):
            continue
        trajectory.append(point(len(trajectory), candidate, trajectory[-1].channels, evaluator.commit(candidate)))
        evaluator.evaluations += 1  # one configuration scored per point
        last_flops = flops
        if at_floor:
            break
    return trajectory
