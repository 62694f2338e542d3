"""MorphNet: the penalty's cost is the counted cost, a unit's BN layers are one group, sorting
channels by score keeps the network's function, a stronger penalty leaves fewer FLOPs alive,
the threshold trajectory falls monotonically, and a killed training resumes."""

from __future__ import annotations

import pytest
import torch

from slimnet.console.progress import Reporter
from slimnet.datasets.load import fixed_batches, load_split
from slimnet.nn.network import Network
from slimnet.optimizers.autoslim import CandidateEvaluator
from slimnet.optimizers.morphnet_penalty import (
    Regularizer,
    alive_cost,
    layer_costs,
    permute_units,
    ranked_channels,
    unit_batchnorms,
)
from slimnet.optimizers.morphnet_sweep import counts_above, threshold_trajectory
from slimnet.optimizers.morphnet_training import train_morphnet
from slimnet.pipeline.morphnet import every_count
from slimnet.space.flops import cost
from slimnet.space.spec import uniform_spec
from slimnet.training.checkpoint import Checkpoints
from slimnet.training.recipe import Recipe
from slimnet.training.sandwich import build_space
from tests.realdata import needs_fashion_mnist, prepare_fashion_slice, small_resnet_reference

ARCHS = [("mobilenet_v2", True), ("resnet18", False), ("mobilenet_v1", True), ("mnasnet", False), ("resnet50", False)]


def random_bn(network: Network, seed: int = 0) -> None:
    generator = torch.Generator().manual_seed(seed)
    for module in network.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            n = module.num_features
            module.weight.data = torch.rand(n, generator=generator)
            module.bias.data = torch.rand(n, generator=generator) - 0.5
            module.running_mean = torch.rand(n, generator=generator) - 0.5
            module.running_var = torch.rand(n, generator=generator) + 0.5


@pytest.mark.parametrize("arch, cifar", ARCHS)
def test_the_alive_cost_of_any_configuration_is_its_counted_flops(arch, cifar):
    spec = uniform_spec(arch, 0.25, resolution=32, num_classes=10, cifar=cifar)
    blueprint = spec.blueprint()
    layers = layer_costs(blueprint, 32, "flops")
    generator = torch.Generator().manual_seed(0)
    for _ in range(3):
        counts = {u: int(torch.randint(1, c + 1, (1,), generator=generator)) for u, c in spec.channels.items()}
        assert alive_cost(layers, counts) == cost(blueprint, counts, 32).flops
    # params: the conv and linear weights (BN's affine pair and the classifier bias are not channels' cost)
    weights = layer_costs(blueprint, 32, "params")
    bn_and_bias = sum(2 * c for b in blueprint.blocks for c in [spec.channels[conv.out_unit] for conv in b.convs])
    bn_and_bias += sum(2 * spec.channels[b.out_unit] for b in blueprint.blocks if b.residual == "project") + 10
    assert alive_cost(weights, spec.channels) == cost(blueprint, spec.channels, 32).params - bn_and_bias


@pytest.mark.parametrize("arch, cifar", ARCHS[:2])
def test_sorting_channels_by_score_keeps_the_function_and_puts_the_best_first(arch, cifar):
    spec = uniform_spec(arch, 0.25, resolution=32, num_classes=10, cifar=cifar)
    network = Network(spec.blueprint()).eval()
    random_bn(network)
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        before = network(x)
    regularizer = Regularizer(network, layer_costs(network.blueprint, 32), threshold=0.01)
    permute_units(network, ranked_channels(regularizer.scores()))
    with torch.no_grad():
        after = network(x)
    assert torch.allclose(before, after, atol=1e-5, rtol=1e-4)
    for unit, scores in regularizer.scores().items():
        assert bool((scores[:-1] >= scores[1:]).all()), unit


def test_the_bn_layers_a_residual_add_ties_are_one_group():
    """A channel of a unit written by several BN layers stays alive while any of them keeps it
    (MorphNet's max grouping), and the penalty pushes only the largest."""
    spec = uniform_spec("mobilenet_v2", 0.25, resolution=32, num_classes=10, cifar=True)
    network = Network(spec.blueprint())
    tied = {unit: bns for unit, bns in unit_batchnorms(network).items() if len(bns) > 1}
    assert tied  # MobileNetV2's residual blocks share their output unit
    unit, bns = next(iter(tied.items()))
    regularizer = Regularizer(network, layer_costs(network.blueprint, 32), threshold=0.01)
    width = spec.channels[unit]
    with torch.no_grad():
        bns[0].weight[0] = 0.0
    assert regularizer.alive_counts()[unit] == width
    with torch.no_grad():
        for bn in bns:
            bn.weight[0] = 0.0
        bns[-1].weight[1] = 0.0
    assert regularizer.alive_counts()[unit] == width - 1  # channel 1 lives on in the others
    with torch.no_grad():
        bns[0].weight[1] = 5.0
    regularizer.penalty().backward()
    assert float(bns[0].weight.grad[1]) > 0 and all(float(bn.weight.grad[1]) == 0 for bn in bns[1:])


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return prepare_fashion_slice(tmp_path_factory.mktemp("fashion"), fraction=0.02, search_resolution=12)


def train_small(data_dir, checkpoint_dir, strength: float, *, epochs: int = 4, on_epoch=None):
    train_set = load_split(data_dir / "search" / "train.pt")
    val_set = load_split(data_dir / "search" / "val.pt")
    reference = small_resnet_reference(train_set.resolution)
    space = build_space(reference, min_width=0.25, max_width=1.0, groups=4, divisor=2)
    network, scores, curves, summary = train_morphnet(
        space,
        layer_costs(space.blueprint, reference.resolution),
        train_set,
        val_set,
        recipe=Recipe(epochs=epochs, batch_size=64, lr=0.1, warmup_epochs=0.0, seed=0),
        resolution=reference.resolution,
        strength=strength,
        threshold=0.01,
        checkpoints=Checkpoints(checkpoint_dir, f"morphnet-{strength}"),
        device=torch.device("cpu"),
        report=Reporter(None),
        on_epoch=on_epoch,
    )
    return network, scores, curves, summary, space, reference


@pytest.fixture(scope="module")
def strong(data_dir, tmp_path_factory, single_thread):
    return train_small(data_dir, tmp_path_factory.mktemp("strong"), strength=100.0)


@needs_fashion_mnist
@pytest.mark.slow
def test_a_stronger_penalty_leaves_fewer_flops_alive(data_dir, strong, tmp_path):
    weak = train_small(data_dir, tmp_path, strength=0.3)
    weak_ratio, strong_ratio = weak[3]["alive_cost_ratio"], strong[3]["alive_cost_ratio"]
    assert strong_ratio < 0.8 * weak_ratio, (weak_ratio, strong_ratio)
    assert 10.0 < strong[3]["val_acc"]  # still a classifier: better than chance on 10 classes


@needs_fashion_mnist
@pytest.mark.slow
def test_the_threshold_trajectory_falls_monotonically_from_the_largest_configuration(data_dir, strong):
    network, scores, _, _, space, reference = strong
    prefixes = build_space(reference, min_width=0.25, max_width=1.0, groups=4, divisor=2)
    every = every_count(prefixes)
    supernet = Network(every.blueprint, every.maximum, slimmable=True)
    supernet.load_state_dict(network.state_dict())
    evals = fixed_batches(load_split(data_dir / "search" / "val.pt"), 256, 256, 1)
    evaluator = CandidateEvaluator(supernet, every, [], evals, bn="online")
    largest = cost(every.blueprint, every.maximum, reference.resolution).flops
    points = threshold_trajectory(evaluator, scores, reference=reference, floor_flops=int(0.2 * largest))
    assert points[0].channels == every.maximum and points[0].flops == largest
    # A point once the FLOPs fell 1% of the largest's; the last may fall less (it reached the floor).
    assert all(a.flops - b.flops >= 0.01 * largest for a, b in zip(points[:-1], points[1:-1]))
    assert points[-2].flops > points[-1].flops
    for a, b in zip(points, points[1:]):
        assert all(b.channels[u] <= a.channels[u] for u in a.channels) and b.slimmed
        assert all(b.channels[u] >= every.minimum[u] for u in b.channels)
    assert points[-1].flops <= 0.2 * largest or points[-1].channels == every.minimum
    # Every point keeps the channels scoring above one global threshold (the sorted prefixes).
    thresholds = sorted({v for values in scores.values() for v in values})
    for point in points[1:]:
        assert any(counts_above(scores, t, every.minimum) == point.channels for t in thresholds), point.step
    assert evaluator.evaluations == len(points) - 1 and all(p.evaluations == 1 for p in points[1:])


@needs_fashion_mnist
@pytest.mark.slow
def test_a_killed_morphnet_training_resumes_from_its_checkpoint(data_dir, tmp_path):
    class Killed(Exception):
        pass

    def kill(row: dict) -> None:
        if row["epoch"] == 1:
            raise Killed

    with pytest.raises(Killed):
        train_small(data_dir, tmp_path, strength=100.0, on_epoch=kill)
    saved = torch.load(tmp_path / "morphnet-100.0.pt", weights_only=False)
    assert saved["epoch"] == 1
    seen = []
    _, _, curves, _, _, _ = train_small(data_dir, tmp_path, strength=100.0, on_epoch=seen.append)
    assert [row["epoch"] for row in curves] == [1, 2, 3, 4] and [row["epoch"] for row in seen] == [2, 3, 4]
    assert curves[0] == saved["curves"][0]  # the first epoch is the killed run's, not retrained
