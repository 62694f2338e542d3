"""One network for many budgets: switchable BN keeps each width's statistics apart, each width
is exactly its own plain network, and the network trains on real data."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from slimnet.console.progress import Reporter
from slimnet.datasets.load import load_split
from slimnet.nn.switchable import SlimmableNetwork, recalibrate_width
from slimnet.space.spec import uniform_spec
from slimnet.training.checkpoint import Checkpoints
from slimnet.training.joint import train_slimmable
from slimnet.training.recipe import Recipe
from tests.realdata import needs_fashion_mnist, prepare_fashion_slice

DEPTH = (1, 1, 1, 1, 1, 1, 1)


def three_widths(resolution: int = 16):
    return [
        uniform_spec("mobilenet_v2", w, resolution=resolution, num_classes=10, in_channels=1, cifar=True, depth=DEPTH, divisor=4)
        for w in (0.5, 0.35, 0.25)
    ]


def randomize_width_bns(model: SlimmableNetwork, index: int, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    for switchable in model.switchable_bns():
        bn = switchable.bns[index]
        bn.running_mean.copy_(torch.randn(bn.num_features, generator=generator))
        bn.running_var.copy_(torch.rand(bn.num_features, generator=generator) + 0.5)


def test_each_width_runs_with_its_own_bn_statistics(single_thread):
    specs = three_widths()
    torch.manual_seed(0)
    model = SlimmableNetwork(specs).eval()
    for index in range(3):
        randomize_width_bns(model, index, seed=index)
    x = torch.randn(4, 1, 16, 16, generator=torch.Generator().manual_seed(3))

    def outputs():
        results = []
        with torch.no_grad():
            for index in range(3):
                model.switch(index)
                results.append(model(x))
        return results

    before = outputs()
    for a, b in ((0, 1), (0, 2), (1, 2)):
        assert not torch.allclose(before[a], before[b], atol=1e-3)
    # Each width is its own plain network: its slice of the shared weights plus its private BNs.
    for index, spec in enumerate(specs):
        plain = model.plain(index)
        assert sum(p.numel() for p in plain.parameters()) == spec.cost().params
        with torch.no_grad():
            assert torch.allclose(plain(x), before[index], atol=1e-5)
    # New statistics for width 1 change width 1 only.
    randomize_width_bns(model, 1, seed=11)
    after = outputs()
    assert torch.equal(after[0], before[0]) and torch.equal(after[2], before[2])
    assert not torch.allclose(after[1], before[1], atol=1e-3)
    # Recalibrating width 2 sets its statistics from data and leaves width 0's as they were.
    width0 = [s.bns[0].running_mean.clone() for s in model.switchable_bns()]
    recalibrate_width(model, 2, [torch.randn(8, 1, 16, 16) * 3 + 1])
    assert all(torch.equal(s.bns[0].running_mean, m) for s, m in zip(model.switchable_bns(), width0))
    assert model.switchable_bns()[0].bns[2].running_mean.abs().sum() > 0


def test_widths_must_share_the_architecture():
    a = three_widths()[0]
    b = uniform_spec("mobilenet_v2", 0.5, resolution=16, num_classes=10, in_channels=1, cifar=True, divisor=4)
    with pytest.raises(ValueError, match="share arch, depth"):
        SlimmableNetwork([a, b])


@needs_fashion_mnist
@pytest.mark.slow
def test_training_a_few_steps_on_real_data_learns_every_width(tmp_path, single_thread):
    data = prepare_fashion_slice(tmp_path / "data", fraction=0.02)
    # The 14 px search split: a quarter of the full split's cost, the same images.
    train_set, val_set = load_split(data / "search" / "train.pt"), load_split(data / "search" / "val.pt")
    specs = three_widths(resolution=14)
    torch.manual_seed(0)
    model = SlimmableNetwork(specs)
    recipe = Recipe(epochs=1, batch_size=64, lr=0.2, warmup_epochs=0.0)  # 16 steps
    checkpoints = Checkpoints(tmp_path / "ckpt", "k")
    run = dict(recipe=recipe, distill=True, checkpoints=checkpoints, device=torch.device("cpu"), report=Reporter(None))
    model, curves, summary = train_slimmable(model, train_set, val_set, **run)
    assert len(curves) == 1 and len(summary["val_acc"]) == 3
    for width in range(3):
        assert summary["val_acc"][width] > 25.0, summary  # 10 classes: chance is 10%
    # Every width's BNs hold statistics of their own, not a shared copy.
    first = model.switchable_bns()[1]
    assert not torch.allclose(first.bns[0].running_mean[: first.bns[2].num_features], first.bns[2].running_mean)
    assert isinstance(model.plain(2).blocks[0].body[0][1], nn.BatchNorm2d)
    # A run killed after its last epoch resumes from the checkpoint: same weights, no retraining.
    again, curves_again, _ = train_slimmable(SlimmableNetwork(specs), train_set, val_set, **run)
    assert curves_again == curves
    assert all(torch.equal(a, b) for a, b in zip(again.state_dict().values(), model.state_dict().values()))
