"""Baselines trained beside the searched network at the same cost.

The random networks are what NAS results are judged against: configurations drawn uniformly from
the supernet's own space (so the search could have found each), brought by one factor onto the
space's choices to the searched point's cost on the projected problem, and carried to the full
network exactly like the searched one (per-unit multipliers, depth stacking, one global factor,
the same channel grid): see slimnet.optimizers.budgets.extrapolate_within.
"""

from __future__ import annotations

import torch

from slimnet.console.errors import SlimnetError
from slimnet.optimizers.transfer import K_HIGH, K_LOW, _bracket, _closest
from slimnet.space.channels import ChannelSpace
from slimnet.space.flops import cost
from slimnet.space.spec import ArchSpec


def nearest_choices(space: ChannelSpace, wanted: dict[str, float]) -> dict[str, int]:
    """Each unit at the choice of ``space`` nearest ``wanted`` (the narrower on a tie)."""
    return {unit: min(options, key=lambda c: (abs(c - wanted[unit]), c)) for unit, options in space.choices.items()}


def scale_onto_choices(space: ChannelSpace, config: dict[str, int], flops: int, resolution: int) -> dict[str, int]:
    """``config`` times one factor, each unit at its nearest choice, costing as near ``flops`` as
    the choices allow (the space's minimum or maximum where the target is out of its reach)."""

    def at(k: float) -> dict[str, int]:
        return nearest_choices(space, {unit: k * channels for unit, channels in config.items()})

    def evaluate(k: float) -> int:
        return cost(space.blueprint, at(k), resolution).flops

    k, _ = _closest(evaluate, _bracket(evaluate, flops, K_LOW, K_HIGH), flops)
    return at(k)


def draw_configuration(space: ChannelSpace, seed: int, *, flops: int, resolution: int) -> tuple[dict[str, int], dict[str, int]]:
    """A seeded uniform draw from ``space`` and that draw scaled to ``flops`` on the projected
    network (the searched point's cost there, so the supernet scores both at the same cost);
    returns (scaled, drawn). The scaled one is what is carried to the full network."""
    drawn = space.sample(torch.Generator().manual_seed(seed))
    return scale_onto_choices(space, drawn, flops, resolution), drawn


def projected_uniform(space: ChannelSpace, projected: ArchSpec, uniform: ArchSpec, full: ArchSpec) -> dict[str, int]:
    """The uniform baseline ``uniform`` (a width of the full network ``full``) as a configuration
    of the supernet around ``projected``: each unit keeps the share of its channels that the
    uniform network keeps of the same unit of ``full`` (the width transfer, run backwards), at the
    nearest choice of the space (the narrower on a tie), so the supernet can score it too.

    The share is taken against ``full`` and not as an absolute width multiplier: the projected
    network is already ``transfer.width`` x the full one, so an absolute 0.16x would land on the
    space's minimum."""
    for unit in space.choices:
        if unit not in full.channels or unit not in uniform.channels:
            raise SlimnetError(f"the projected unit {unit} is not in the full network: re-run the project and search stages")
    return nearest_choices(space, {u: uniform.channels[u] / full.channels[u] * projected.channels[u] for u in space.choices})
