"""Where a network's numbers stop meaning anything: the smallest input its strides can read and
the width ranges that leave a supernet nothing to choose. Computed from the blueprint, so each
architecture and variant (CIFAR stem or not, any depth) answers for itself."""

from __future__ import annotations

import math

from slimnet.space.channels import Blueprint, ChannelSpace, round_to


def total_stride(blueprint: Blueprint) -> int:
    """How many input pixels one pixel of the last feature map spans along a side: the product of
    every block's stride (max-pools included). A smaller input shrinks below one pixel on the way."""
    return math.prod(block.stride for block in blueprint.blocks)


def has_choices(blueprint: Blueprint, min_width: float, max_width: float, groups: int, divisor: int) -> bool:
    """Whether the supernet's space around ``blueprint`` gives some unit two widths or more."""
    space = ChannelSpace.around(blueprint, min_width, max_width, groups, divisor)
    return any(len(choices) > 1 for choices in space.choices.values())


def smallest_max_width(blueprint: Blueprint, min_width: float, groups: int, divisor: int) -> float:
    """The smallest max_width, in hundredths, at which some unit has two widths (``min_width``,
    ``groups`` and ``divisor`` kept). A unit of ``base`` channels has two once its top,
    ``base * max_width`` rounded to ``divisor``, passes its bottom by one ``divisor``."""
    start = min((round_to(base * min_width, divisor) + divisor / 2) / base for base in blueprint.units.values() if base > 0)
    candidate = round(max(math.ceil(start * 100 - 1e-6) / 100, min_width + 0.01), 2)
    while not has_choices(blueprint, min_width, candidate, groups, divisor):
        candidate = round(candidate + 0.01, 2)
    return candidate
