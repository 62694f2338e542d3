"""greedy_slim's decision rule on scripted scores: which candidate wins, and what the trajectory
records about how close the decision was. The network is a real MobileNetV2 channel space at
ImageNet scale (so FLOPs savings are real counts of 1e5..1e7); only the held-out scores are
scripted, so each test pins one rule of the ranking."""

from __future__ import annotations

import pytest

from slimnet.optimizers.autoslim import Score, greedy_slim
from slimnet.space.flops import cost
from slimnet.space.spec import uniform_spec
from slimnet.training.sandwich import build_space

BASE = Score(accuracy=80.0, loss=1.0, calibrated=1.0)
BAD = Score(accuracy=50.0, loss=3.0, calibrated=3.0)  # every unit not named by a test: clearly the wrong choice


class ScriptedEvaluator:
    """The evaluator interface greedy_slim uses, with scores looked up by the unit shrunk."""

    def __init__(self, space, scores: dict[str, Score]):
        self.space, self.scores, self.evaluations = space, scores, 0

    def commit(self, config: dict[str, int]) -> Score:
        return BASE

    def score(self, config: dict[str, int], changed_unit: str) -> Score:
        self.evaluations += 1
        return self.scores.get(changed_unit, BAD)


@pytest.fixture(scope="module")
def imagenet():
    reference = uniform_spec("mobilenet_v2", 1.0, resolution=224, num_classes=1000)
    space = build_space(reference, min_width=0.15, max_width=1.5, groups=10, divisor=8)
    full = cost(space.blueprint, space.maximum, 224).flops
    saved = {}
    for unit in space.choices:
        smaller = {**space.maximum, unit: space.smaller(space.maximum, unit)}
        saved[unit] = full - cost(space.blueprint, smaller, 224).flops
    return reference, space, saved


def first_step(reference, space, scores, **options):
    points = greedy_slim(ScriptedEvaluator(space, scores), reference=reference, max_steps=1, **options)
    return points[1]


def test_per_flop_gains_prefer_the_bigger_saving(imagenet):
    # Both candidates gain one point; the one saving more FLOPs must win. drop / saved with a
    # negative drop made the smallest saving the "best" one.
    reference, space, saved = imagenet
    big = max(saved, key=saved.get)
    small = min(saved, key=saved.get)
    better = Score(accuracy=81.0, loss=0.9)
    step = first_step(reference, space, {big: better, small: better}, per_flop=True)
    assert step.slimmed == big, (saved[big], saved[small])


def test_per_flop_is_not_rounded_into_a_tie_at_imagenet_scale(imagenet):
    # a saves less but drops half as much: per FLOP it is clearly cheaper. Rounded to 9 digits
    # both values were 0.0 and the tie went to the bigger saving (b).
    reference, space, saved = imagenet
    units = sorted((u for u in saved if saved[u] > 100_000), key=saved.get)
    a, b = next((x, y) for x, y in zip(units, units[1:]) if saved[x] < saved[y] < 2 * saved[x])
    scores = {a: Score(accuracy=80.0 - 1e-4, loss=1.0), b: Score(accuracy=80.0 - 2e-4, loss=1.0)}
    step = first_step(reference, space, scores, per_flop=True)
    assert step.slimmed == a


def test_accuracy_ties_go_to_the_lower_loss_and_the_runner_up_is_recorded(imagenet):
    # One image of 512 apart is the usual tie; the candidate that saves more FLOPs used to win it.
    reference, space, saved = imagenet
    cheap = min(saved, key=saved.get)
    costly = max(saved, key=saved.get)
    scores = {cheap: Score(accuracy=79.8, loss=1.01), costly: Score(accuracy=79.8, loss=1.05)}
    step = first_step(reference, space, scores)
    assert step.slimmed == cheap
    assert step.runner_up == costly and step.margin == 0.0


def test_the_margin_is_the_runner_ups_extra_drop(imagenet):
    reference, space, saved = imagenet
    a, b = list(saved)[:2]
    scores = {a: Score(accuracy=79.5, loss=1.1), b: Score(accuracy=79.0, loss=1.0)}
    step = first_step(reference, space, scores)
    assert (step.slimmed, step.runner_up) == (a, b)
    assert step.margin == pytest.approx(0.5)
    loss_step = first_step(reference, space, scores, criterion="loss")
    assert (loss_step.slimmed, loss_step.runner_up) == (b, a) and loss_step.margin == pytest.approx(0.1)


def test_calibrated_criterion_does_not_punish_a_narrower_last_layer_for_its_logit_scale(imagenet):
    # Narrowing the conv that feeds the classifier shrinks the logits (no BN after it): the loss
    # rises (1.0 -> 1.2) though the classes are ordered as well as before (calibrated 1.01).
    # Another unit's loss rises less (1.1) because it really orders them worse (calibrated 1.1).
    reference, space, _ = imagenet
    scale_only = Score(accuracy=79.9, loss=1.2, calibrated=1.01)
    worse_order = Score(accuracy=79.6, loss=1.1, calibrated=1.1)
    scores = {"last": scale_only, "stage3": worse_order}
    assert first_step(reference, space, scores, criterion="loss").slimmed == "stage3"
    assert first_step(reference, space, scores, criterion="calibrated").slimmed == "last"
