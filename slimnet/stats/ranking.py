"""How well one list of scores ranks like another: Kendall's tau-b (ties counted as in scipy)."""

from __future__ import annotations

import math
from collections.abc import Sequence


def kendall_tau(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Kendall's tau-b of two equally long lists; None when either is constant or has < 2 items.

    +1: every pair is ordered alike; -1: every pair the other way. Used to check AutoSlim's
    assumption that the supernet's estimate ranks networks as training them from scratch does.
    """
    if len(x) != len(y):
        raise ValueError(f"kendall_tau needs lists of one length (got {len(x)} and {len(y)})")
    concordant = discordant = ties_x = ties_y = 0
    for i in range(len(x)):
        for j in range(i + 1, len(x)):
            dx, dy = x[i] - x[j], y[i] - y[j]
            if dx == 0 and dy == 0:
                continue  # tied in both: counts in neither denominator term
            if dx == 0:
                ties_x += 1
            elif dy == 0:
                ties_y += 1
            elif (dx > 0) == (dy > 0):
                concordant += 1
            else:
                discordant += 1
    denominator = math.sqrt((concordant + discordant + ties_x) * (concordant + discordant + ties_y))
    if denominator == 0:
        return None
    return (concordant - discordant) / denominator


def width_similarity(a: dict[str, int], b: dict[str, int], reference: dict[str, int]) -> float:
    """Cosine similarity of two configurations' per-unit width multipliers (channels over the
    ``reference`` network's): 1.0 when one is a uniform rescaling of the other, so it measures
    whether two searches put the channels in the same places, not how many they kept."""
    if a.keys() != b.keys() or not set(a) <= set(reference):
        raise ValueError("width_similarity needs two configurations of the same units as the reference")
    x = [a[u] / reference[u] for u in a]
    y = [b[u] / reference[u] for u in a]
    norm = math.sqrt(sum(v * v for v in x) * sum(v * v for v in y))
    return sum(p * q for p, q in zip(x, y)) / norm if norm else 0.0
