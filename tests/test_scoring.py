"""The calibrated loss: cross-entropy at the best logit scale, the search's scale-free criterion."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from slimnet.stats.scoring import calibrated_loss


def logits_and_labels(n: int = 600, classes: int = 10, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, classes, (n,), generator=generator)
    logits = torch.randn(n, classes, generator=generator) * 2.0
    logits[torch.arange(n), labels] += 1.5  # better than chance, not perfect
    return logits, labels


def test_is_the_minimum_over_logit_scales():
    logits, labels = logits_and_labels()
    loss, scale = calibrated_loss([(logits, labels)])
    grid = torch.linspace(0.05, 4.0, 800, dtype=torch.float64)
    losses = torch.stack([F.cross_entropy(logits.double() * s, labels) for s in grid])
    assert loss <= float(losses.min()) + 1e-9
    assert abs(scale - float(grid[losses.argmin()])) < 6e-3
    assert loss < float(F.cross_entropy(logits.double(), labels))  # scale 1 is not the best here


def test_does_not_move_with_the_scale_of_the_logits():
    logits, labels = logits_and_labels(seed=1)
    plain = [float(F.cross_entropy(logits * f, labels)) for f in (0.2, 1.0, 3.0)]
    calibrated = [calibrated_loss([(logits * f, labels)])[0] for f in (0.2, 1.0, 3.0)]
    assert max(plain) - min(plain) > 0.3  # the plain loss punishes the scale alone
    assert max(calibrated) - min(calibrated) < 1e-8


def test_batches_add_up_to_the_whole_set():
    logits, labels = logits_and_labels(seed=2)
    whole = calibrated_loss([(logits, labels)])
    split = calibrated_loss([(logits[:250], labels[:250]), (logits[250:], labels[250:])])
    assert abs(whole[0] - split[0]) < 1e-12 and abs(whole[1] - split[1]) < 1e-12


def test_constant_logits_score_chance():
    labels = torch.arange(10).repeat(5)
    loss, _ = calibrated_loss([(torch.zeros(50, 10), labels)])
    assert abs(loss - math.log(10)) < 1e-12
