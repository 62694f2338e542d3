"""The budgets' trajectory point carried to the full network, as extrapolate and slimmable both do it."""

from __future__ import annotations

from slimnet.config import ExtrapolateParams, ModelParams, SupernetParams
from slimnet.optimizers.budgets import Budget, Costs, extrapolate_within
from slimnet.optimizers.trajectory import OPTIMIZERS, Trajectory
from slimnet.space.channels import ChannelSpace
from slimnet.space.spec import ArchSpec


def supernet_space(trajectory: Trajectory, supernet: SupernetParams) -> ChannelSpace:
    """The supernet's configurations around the projected reference (the random draws' space)."""
    return ChannelSpace.around(
        trajectory.reference.blueprint(), supernet.min_width, supernet.max_width, supernet.groups, supernet.divisor
    )


def extrapolate_budgets(
    trajectory: Trajectory,
    budgets: list[Budget],
    *,
    full: ArchSpec,
    costs: Costs,
    space: ChannelSpace,
    model: ModelParams,
    extrapolate: ExtrapolateParams,
) -> dict:
    """extrapolate_within with the pipeline's settings: the random draws from ``space``, every
    network on one channel grid; DMCP's trajectory ends at the point it decided for the budgets."""
    return extrapolate_within(
        trajectory.points,
        budgets,
        projected_uniform=trajectory.reference,
        full_uniform=full,
        costs=costs,
        stacking=extrapolate.stacking,
        divisor=model.divisor,
        tolerance=extrapolate.tolerance,
        point_rule="last" if trajectory.method == "dmcp" else extrapolate.point,
        space=space,
        random_draws=extrapolate.random_draws,
        optimizer=OPTIMIZERS[trajectory.method],
    )
