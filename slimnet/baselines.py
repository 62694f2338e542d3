"""Baselines trained beside the searched network at the same cost.

The random network is what NAS results are judged against: a configuration drawn uniformly from
the supernet's own space (so it could have been found by the search) and carried to the full
network exactly like the searched one: per-unit multipliers, depth stacking, one global factor.
"""

from __future__ import annotations

import torch

from slimnet.arch import ArchSpec
from slimnet.space import ChannelSpace
from slimnet.transfer import CostFn, Metric, Stacking, match_cost, stack_depth, width_multipliers


def random_network(
    space: ChannelSpace,
    *,
    projected_uniform: ArchSpec,
    full_uniform: ArchSpec,
    target: int,
    metric: Metric,
    stacking: Stacking,
    divisor: int,
    tolerance: float,
    seed: int,
    measure: CostFn | None = None,
) -> tuple[ArchSpec, dict[str, int]]:
    """A seeded draw from ``space`` (units of ``projected_uniform``), matched to ``target`` on the
    full network (``measure`` for a metric cost() does not give, e.g. predicted latency); returns
    the full spec and the drawn projected configuration."""
    drawn = space.sample(torch.Generator().manual_seed(seed))
    multipliers = width_multipliers(projected_uniform.with_channels(drawn), projected_uniform)
    stacked = stack_depth(multipliers, projected_uniform.depth, full_uniform.depth, full_uniform.arch, stacking)
    spec, k = match_cost(full_uniform, stacked, dict(full_uniform.channels), target, metric, divisor, tolerance, measure)
    return spec.model_copy(update={"note": f"random draw (seed {seed}), width transfer k={k:.4g} ({stacking})"}), drawn


def projected_uniform(space: ChannelSpace, reference: ArchSpec, width: float) -> dict[str, int]:
    """The uniform network of ``width`` (a multiplier of the full 1.0x network) as a supernet
    configuration: each unit's largest choice at or below ``width`` x its projected 1.0x channels
    (its smallest choice when none is), so the supernet can score the uniform baseline too."""
    config = {}
    for unit, options in space.choices.items():
        limit = width * reference.channels[unit]
        config[unit] = max((c for c in options if c <= limit + 1e-9), default=options[0])
    return config
