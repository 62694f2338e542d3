"""Kendall's tau-b against scipy on lists with and without ties."""

from __future__ import annotations

import random

import pytest

from slimnet.stats.ranking import kendall_tau


def test_orders_alike_and_reversed():
    assert kendall_tau([1, 2, 3, 4], [10, 20, 30, 40]) == 1.0
    assert kendall_tau([1, 2, 3, 4], [4, 3, 2, 1]) == -1.0
    # One swapped pair among six: (5 - 1) / 6.
    assert kendall_tau([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(4 / 6)
    assert kendall_tau([1, 1, 1], [1, 2, 3]) is None and kendall_tau([1], [2]) is None
    with pytest.raises(ValueError, match="one length"):
        kendall_tau([1, 2], [1])


def test_agrees_with_scipy_with_ties():
    stats = pytest.importorskip("scipy.stats")
    rng = random.Random(0)
    for _ in range(20):
        n = rng.randint(3, 12)
        x = [rng.choice([70.0, 71.5, 72.0, 73.25]) for _ in range(n)]
        y = [rng.choice([80.0, 81.0, 82.5]) for _ in range(n)]
        expected = stats.kendalltau(x, y).statistic
        ours = kendall_tau(x, y)
        if expected != expected:  # nan: a constant list
            assert ours is None
        else:
            assert ours == pytest.approx(expected, abs=1e-12)


def test_width_similarity_sees_where_channels_go_not_how_many():
    from slimnet.stats.ranking import width_similarity

    reference = {"stem": 16, "mid": 64, "last": 256}
    a = {"stem": 8, "mid": 32, "last": 128}
    assert width_similarity(a, {"stem": 16, "mid": 64, "last": 256}, reference) == pytest.approx(1.0)  # a uniform rescale
    moved = {"stem": 16, "mid": 64, "last": 32}  # the last layer's share went to the others
    assert width_similarity(a, moved, reference) < 0.9
    assert width_similarity(moved, moved, reference) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        width_similarity(a, {"stem": 8, "mid": 32}, reference)
