"""Is the difference between two trained networks more than training noise?

Both are trained once per seed with the same seeds; the gain of seed s is a[s] - b[s] (the
pairing removes what a seed does to both alike: data order, augmentation). The 95% interval
of the mean gain uses Student's t with n - 1 degrees of freedom.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict

# Two-sided 95% quantiles of Student's t (0.975 point) for 1..30 degrees of freedom.
T975 = (
    12.7062, 4.3027, 3.1824, 2.7764, 2.5706, 2.4469, 2.3646, 2.3060, 2.2622, 2.2281,
    2.2010, 2.1788, 2.1604, 2.1448, 2.1314, 2.1199, 2.1098, 2.1009, 2.0930, 2.0860,
    2.0796, 2.0739, 2.0687, 2.0639, 2.0595, 2.0555, 2.0518, 2.0484, 2.0452, 2.0423,
)  # fmt: skip
Z975 = 1.959964


def t975(dof: int) -> float:
    """The 0.975 quantile of Student's t; beyond the table, the normal one with its 1/dof correction."""
    if dof < 1:
        raise ValueError("a t quantile needs at least one degree of freedom")
    if dof <= len(T975):
        return T975[dof - 1]
    return Z975 + (Z975**3 + Z975) / (4 * dof)


class Comparison(BaseModel):
    """The paired gain of one network over another, over seeds."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    seeds: int
    gain: float  # mean of the per-seed differences, top-1 points
    ci95_low: float | None  # None with one seed: one difference says nothing about the noise
    ci95_high: float | None
    verdict: str  # better | worse | within noise


def verdict_of(low: float | None, high: float | None) -> str:
    """better / worse only when the whole interval is on one side of zero; an unknown interval
    (one seed) is unbounded, so it always contains zero."""
    if low is not None and low > 0:
        return "better"
    if high is not None and high < 0:
        return "worse"
    return "within noise"


def paired_gain(ours: Sequence[float], theirs: Sequence[float]) -> Comparison:
    """Gain of ``ours`` over ``theirs`` (both indexed by the same seeds) with its 95% interval."""
    if len(ours) != len(theirs) or not ours:
        raise ValueError(f"paired results need the same, non-zero number of seeds (got {len(ours)} and {len(theirs)})")
    differences = [a - b for a, b in zip(ours, theirs)]
    gain = statistics.fmean(differences)
    low = high = None
    if len(differences) > 1:
        half = t975(len(differences) - 1) * statistics.stdev(differences) / math.sqrt(len(differences))
        low, high = gain - half, gain + half
    return Comparison(
        seeds=len(differences),
        gain=round(gain, 3),
        ci95_low=None if low is None else round(low, 3),
        ci95_high=None if high is None else round(high, 3),
        verdict=verdict_of(low, high),
    )


def mean_and_std(values: Sequence[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (None for a single value)."""
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)


def draws_mean(draws: Sequence[Sequence[float]]) -> list[float]:
    """Seed by seed, the mean over several draws of a baseline (each indexed by the same seeds):
    what a paired comparison against the draws as one baseline takes."""
    if not draws or len({len(d) for d in draws}) != 1:
        raise ValueError("draws need the same, non-zero number of seeds each")
    return [statistics.fmean(values) for values in zip(*draws)]


def rank_among_draws(ours: Sequence[float], draws: Sequence[Sequence[float]]) -> int:
    """Our place among the draws by mean over the seeds: 1 when ours beats every draw's mean,
    len(draws) + 1 when no draw is below it (a tie counts against ours)."""
    mean = statistics.fmean(ours)
    return 1 + sum(statistics.fmean(draw) >= mean for draw in draws)
