"""The verdict's statistics against independent figures (scipy's t distribution, hand arithmetic)."""

from __future__ import annotations

import math

import pytest

from slimnet.verdict import paired_gain, t975


def test_t_quantiles_match_scipy():
    stats = pytest.importorskip("scipy.stats")
    for dof in (1, 2, 3, 5, 10, 29, 30, 31, 60, 200):
        assert t975(dof) == pytest.approx(stats.t.ppf(0.975, dof), rel=2e-3), dof


def test_the_issue_9_figures():
    # Issue 9: 6M networks retrained with three seeds. Optimized 86.53 / 86.12 / 85.72, uniform
    # 86.27 / 87.62 / 86.08: a mean paired gain of -0.53 and an interval of about +-2.2.
    result = paired_gain([86.53, 86.12, 85.72], [86.27, 87.62, 86.08])
    differences = [0.26, -1.50, -0.36]
    mean = sum(differences) / 3
    sd = math.sqrt(sum((d - mean) ** 2 for d in differences) / 2)
    assert result.gain == pytest.approx(-0.533, abs=1e-3)
    assert result.ci95_high - result.gain == pytest.approx(4.3027 * sd / math.sqrt(3), abs=2e-3)
    assert 2.0 < result.ci95_high - result.gain < 2.4
    assert result.verdict == "within noise" and result.seeds == 3


def test_consistent_gains_are_better_and_consistent_losses_worse():
    assert paired_gain([80.0, 81.0, 80.5], [79.0, 79.8, 79.6]).verdict == "better"
    assert paired_gain([79.0, 79.8, 79.6], [80.0, 81.0, 80.5]).verdict == "worse"


def test_one_seed_has_no_interval_and_is_never_a_win():
    result = paired_gain([90.0], [80.0])
    assert result.gain == 10.0 and result.ci95_low is None and result.ci95_high is None
    assert result.verdict == "within noise"


def test_unpaired_results_are_refused():
    with pytest.raises(ValueError, match="same"):
        paired_gain([1.0, 2.0], [1.0])
