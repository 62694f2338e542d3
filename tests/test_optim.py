"""The learning-rate schedules, at the steps where they must change."""

from __future__ import annotations

import pytest

from slimnet.config import TrainParams
from slimnet.training.optim import lr_factor


def test_step_schedule_divides_by_ten_at_epochs_30_60_90_of_100():
    total, warmup = 100 * 10, 5 * 10  # 100 epochs of 10 steps, 5 warm-up epochs (the ResNet-50 preset)
    assert lr_factor(0, total, warmup, "step") == pytest.approx(1 / 50)
    assert lr_factor(49, total, warmup, "step") == 1.0
    assert lr_factor(299, total, warmup, "step") == 1.0
    assert lr_factor(300, total, warmup, "step") == pytest.approx(0.1)
    assert lr_factor(599, total, warmup, "step") == pytest.approx(0.1)
    assert lr_factor(600, total, warmup, "step") == pytest.approx(0.01)
    assert lr_factor(999, total, warmup, "step") == pytest.approx(0.001)
    # The other schedules decay smoothly over the same steps.
    assert lr_factor(300, total, warmup, "cosine") < 1.0 and lr_factor(300, total, warmup, "linear") < 1.0


def test_step_is_a_schedule_params_accept():
    assert TrainParams(epochs=100, schedule="step").schedule == "step"
    with pytest.raises(ValueError, match="schedule"):
        TrainParams(epochs=100, schedule="exponential")
