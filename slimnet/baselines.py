"""Baselines trained beside the searched network at the same cost.

The random network is what NAS results are judged against: a configuration drawn uniformly from
the supernet's own space (so it could have been found by the search) and carried to the full
network exactly like the searched one: per-unit multipliers, depth stacking, one global factor.
"""

from __future__ import annotations

import torch

from slimnet.arch import ArchSpec
from slimnet.errors import SlimnetError
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
    spec, k, _ = match_cost(full_uniform, stacked, dict(full_uniform.channels), target, metric, divisor, tolerance, measure)
    return spec.model_copy(update={"note": f"random draw (seed {seed}), width transfer k={k:.4g} ({stacking})"}), drawn


def projected_uniform(space: ChannelSpace, projected: ArchSpec, uniform: ArchSpec, full: ArchSpec) -> dict[str, int]:
    """The uniform baseline ``uniform`` (a width of the full network ``full``) as a configuration
    of the supernet around ``projected``: each unit keeps the share of its channels that the
    uniform network keeps of the same unit of ``full`` (the width transfer, run backwards), at the
    nearest choice of the space (the narrower on a tie), so the supernet can score it too.

    The share is taken against ``full`` and not as an absolute width multiplier: the projected
    network is already ``transfer.width`` x the full one, so an absolute 0.16x would land on the
    space's minimum."""
    config = {}
    for unit, options in space.choices.items():
        if unit not in full.channels or unit not in uniform.channels:
            raise SlimnetError(f"the projected unit {unit} is not in the full network: re-run the project and search stages")
        share = uniform.channels[unit] / full.channels[unit]
        wanted = share * projected.channels[unit]
        config[unit] = min(options, key=lambda c: (abs(c - wanted), c))
    return config
