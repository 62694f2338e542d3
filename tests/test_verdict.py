"""The verdict's statistics against independent figures (scipy's t distribution, hand arithmetic)."""

from __future__ import annotations

import math

import pytest

from slimnet.pipeline.evaluate import draws_summary, versus_draws
from slimnet.stats.verdict import draws_mean, paired_gain, rank_among_draws, t975


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


# --- the searched network against N random draws ---

OURS = [80.0, 81.0, 82.0]  # top-1 over seeds 0, 1, 2
DRAWS = [[79.0, 80.0, 80.0], [81.0, 82.0, 83.0], [78.0, 79.0, 80.0]]  # three draws, the same seeds


def test_the_gain_over_the_draws_is_paired_seed_by_seed_against_their_mean():
    assert draws_mean(DRAWS) == pytest.approx([238 / 3, 241 / 3, 81.0])
    result = versus_draws(OURS, DRAWS)
    differences = [80 - 238 / 3, 81 - 241 / 3, 82 - 81.0]  # 2/3, 2/3, 1
    mean = sum(differences) / 3
    half = 4.3027 * math.sqrt(sum((d - mean) ** 2 for d in differences) / 2) / math.sqrt(3)
    assert result["gain_top1"] == pytest.approx(mean, abs=1e-3)
    assert result["gain_ci95_low"] == pytest.approx(mean - half, abs=2e-3)
    assert result["gain_ci95_high"] == pytest.approx(mean + half, abs=2e-3)
    assert result["verdict"] == "better"  # 0.78 +- 0.48: above zero
    # Means over the seeds: ours 81, draws 79.67, 82, 79: one draw above, so second of four.
    assert result["draws"] == 3 and result["rank_among_draws"] == 2


def test_rank_among_draws_from_first_to_last():
    assert rank_among_draws([90.0, 90.0], [[80.0, 81.0], [85.0, 84.0]]) == 1
    assert rank_among_draws([70.0, 70.0], [[80.0, 81.0], [85.0, 84.0]]) == 3
    assert rank_among_draws([80.5, 80.5], [[80.0, 81.0], [85.0, 84.0]]) == 3  # a tie counts against ours
    with pytest.raises(ValueError, match="same"):
        draws_mean([[1.0, 2.0], [1.0]])


def test_one_seed_against_the_draws_has_no_interval():
    result = versus_draws([80.0], [[79.0], [83.0]])
    assert result["gain_top1"] == -1.0 and result["gain_ci95_low"] is None and result["verdict"] == "within noise"
    assert result["rank_among_draws"] == 2


def test_the_draws_summarized_as_one_baseline():
    draws = {
        "random-0": {"top1": 79.667, "flops": 6_010_000, "params": 200_000, "supernet_top1": 56.0},
        "random-1": {"top1": 82.0, "flops": 5_990_000, "params": 220_001, "supernet_top1": 58.0},
    }
    summary = draws_summary(draws)
    assert summary["draws"] == 2 and summary["top1"] == pytest.approx(80.834, abs=1e-3)
    assert summary["top1_std"] == pytest.approx(math.sqrt(2) * (82.0 - 79.667) / 2, abs=1e-3)  # over the draws
    assert summary["flops"] == 6_000_000 and summary["params"] == 210_000 and summary["supernet_top1"] == 57.0
    assert draws_summary({"random-0": draws["random-0"]})["top1_std"] is None
