"""The slimmable supernet against plain networks, and the channel space it runs over."""

import copy

import pytest
import torch
from torch import nn

from slimnet.console.errors import SlimnetError
from slimnet.deploy.measure import cpu_latency_ms
from slimnet.nn.bn import set_training
from slimnet.nn.network import Network, sliced_state_dict
from slimnet.nn.sliced import SlimBatchNorm2d, SlimConv2d
from slimnet.space.channels import ChannelSpace, unit_choices
from slimnet.space.models import ARCHS, build_blueprint, default_depth, depth_scalable, scaled_depth

pytestmark = pytest.mark.usefixtures("single_thread")

RESOLUTION = 32
BATCH = 4


def small_blueprint(arch: str):
    depth = (1, 1, 2, 1) if arch == "resnet101" else scaled_depth(arch, 0.5)
    return build_blueprint(arch, width=0.5, depth=depth, cifar=True, num_classes=10)


def slim_bns(model: nn.Module) -> list[SlimBatchNorm2d]:
    return [m for m in model.modules() if isinstance(m, SlimBatchNorm2d)]


def calibrate(supernet: Network, config: dict[str, int], batches: list[torch.Tensor]) -> None:
    """Fill the supernet's BN running statistics for one configuration (cumulative average)."""
    supernet.set_channels(config)
    supernet.train()
    for bn in slim_bns(supernet):
        bn.reset_running_stats()
        bn.calibrating = True
    try:
        with torch.no_grad():
            for x in batches:
                supernet(x)
    finally:
        for bn in slim_bns(supernet):
            bn.calibrating = False
    supernet.eval()


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return float((actual - expected).abs().max() / expected.abs().max().clamp_min(1e-12))


def make_supernet(arch: str, seed: int):
    torch.manual_seed(seed)
    blueprint = small_blueprint(arch)
    space = ChannelSpace.around(blueprint, 0.15, 1.5, 10, 8)
    supernet = Network(blueprint, space.maximum, slimmable=True)
    # Non-trivial BN affine weights, so a wrongly sliced weight or bias shows in the output.
    with torch.no_grad():
        for bn in slim_bns(supernet):
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.normal_(0.0, 0.2)
        supernet.classifier.weight.normal_(0.0, 0.1)
        supernet.classifier.bias.normal_(0.0, 0.1)
    return blueprint, space, supernet


@pytest.mark.parametrize("arch", ARCHS)
def test_supernet_matches_plain_networks(arch):
    blueprint, space, supernet = make_supernet(arch, seed=ARCHS.index(arch))
    generator = torch.Generator().manual_seed(ARCHS.index(arch))
    random_config = space.sample(generator)
    assert space.problems(random_config) is None
    configs = {"max": space.maximum, "min": space.minimum, "random": random_config}

    def images() -> torch.Tensor:
        return torch.randn(BATCH, 3, RESOLUTION, RESOLUTION, generator=generator)

    # Plain training steps (batch statistics only) at several widths leave the running statistics alone.
    supernet.train()
    buffers = {name: b.clone() for name, b in supernet.named_buffers()}
    for config in (space.maximum, space.minimum, space.sample(generator)):
        supernet.set_channels(config)
        out = supernet(images())
        assert out.shape == (BATCH, blueprint.num_classes)
        out.square().mean().backward()
    for name, buffer in supernet.named_buffers():
        assert torch.equal(buffer, buffers[name]), name
    supernet.zero_grad()

    test_images = images()
    outputs = {}
    for label, config in configs.items():
        batches = [images() for _ in range(3)]
        calibrate(supernet, config, batches)
        stem_bn = supernet.blocks[0].body[0][1]
        assert not torch.allclose(stem_bn.running_var[: config["stem"]], torch.ones(config["stem"]))
        with torch.no_grad():
            outputs[label] = supernet(test_images)
            plain = Network(blueprint, config)
            plain.load_state_dict(sliced_state_dict(supernet, plain))
            expected = plain.eval()(test_images)
        assert expected.shape == (BATCH, blueprint.num_classes)
        assert relative_error(outputs[label], expected) < 1e-4, label
        for module in plain.modules():
            assert not isinstance(module, (SlimConv2d, SlimBatchNorm2d))
        # Calibration gives the statistics the plain network's own BN collects over the same
        # batches (cumulative average, momentum=None).
        plain_bns = [m for m in plain.modules() if isinstance(m, nn.BatchNorm2d)]
        for bn in plain_bns:
            bn.reset_running_stats()
            bn.momentum = None
        plain.train()
        with torch.no_grad():
            for x in batches:
                plain(x)
            recollected = plain.eval()(test_images)
        assert relative_error(outputs[label], recollected) < 1e-4, label
    assert relative_error(outputs["min"], outputs["max"]) > 1e-3


def test_switching_configurations_does_not_copy():
    blueprint, space, supernet = make_supernet("mobilenet_v2", seed=0)
    before = {name: (p.data_ptr(), p.shape) for name, p in supernet.named_parameters()}
    buffers_before = {name: b.data_ptr() for name, b in supernet.named_buffers()}
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, RESOLUTION, RESOLUTION)
    widths = set()
    for config in (space.minimum, space.sample(generator), space.maximum, space.sample(generator)):
        supernet.set_channels(config)
        assert supernet.active["stem"] == config["stem"]
        calibrate(supernet, config, [x])
        with torch.no_grad():
            features = supernet.features(x)
        assert features.shape[1] == config[blueprint.last_unit]
        widths.add(features.shape[1])
    assert len(widths) > 1
    after = {name: (p.data_ptr(), p.shape) for name, p in supernet.named_parameters()}
    assert after == before
    assert {name: b.data_ptr() for name, b in supernet.named_buffers()} == buffers_before


def test_calibration_is_a_cumulative_average_of_batch_statistics():
    _, space, supernet = make_supernet("resnet18", seed=1)
    config = space.sample(torch.Generator().manual_seed(3))
    width = config["stem"]
    assert width < space.maximum["stem"]
    batches = [torch.randn(BATCH, 3, RESOLUTION, RESOLUTION) for _ in range(4)]
    stem_conv, stem_bn = supernet.blocks[0].body[0][0], supernet.blocks[0].body[0][1]
    supernet.set_channels(config)
    with torch.no_grad():
        stem_outputs = [stem_conv(x) for x in batches]
    assert stem_outputs[0].shape[1] == width
    means = torch.stack([y.mean((0, 2, 3)) for y in stem_outputs]).mean(0)
    variances = torch.stack([y.var((0, 2, 3), unbiased=True) for y in stem_outputs]).mean(0)

    calibrate(supernet, config, batches)
    assert int(stem_bn.num_batches_tracked) == len(batches)
    torch.testing.assert_close(stem_bn.running_mean[:width], means, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(stem_bn.running_var[:width], variances, rtol=1e-4, atol=1e-5)
    # Channels above the active width keep their reset values.
    assert torch.equal(stem_bn.running_mean[width:], torch.zeros(space.maximum["stem"] - width))
    assert torch.equal(stem_bn.running_var[width:], torch.ones(space.maximum["stem"] - width))


@pytest.mark.parametrize("training", [True, False])
def test_set_training_sets_the_flags_train_sets(training):
    """The search's mode switch (nn/bn.set_training) against Module.train, from a mixed start:
    the same flag on every module, so BN and dropout behave as they would after train()."""
    _, _, supernet = make_supernet("mobilenet_v2", seed=0)
    modules = list(supernet.modules())
    for i, module in enumerate(modules):
        module.training = i % 3 == 0
    reference = copy.deepcopy(supernet).train(training)
    set_training(modules, training)
    assert [m.training for m in modules] == [m.training for m in reference.modules()] == [training] * len(modules)
    x = torch.randn(BATCH, 3, RESOLUTION, RESOLUTION)
    outputs = []
    for network in (supernet, reference):
        torch.manual_seed(1)  # the same dropout mask in train mode
        with torch.no_grad():
            outputs.append(network(x))
    assert torch.equal(*outputs)  # batch statistics and dropout in train mode, running ones in eval


def test_gradients_reach_only_the_active_channels():
    blueprint, space, supernet = make_supernet("mnasnet", seed=4)
    config = space.minimum
    supernet.set_channels(config)
    supernet.train()
    supernet(torch.randn(BATCH, 3, RESOLUTION, RESOLUTION)).square().mean().backward()
    stem_conv, stem_bn = supernet.blocks[0].body[0][0], supernet.blocks[0].body[0][1]
    width = config["stem"]
    assert stem_conv.weight.grad[:width].abs().sum() > 0
    assert torch.count_nonzero(stem_conv.weight.grad[width:]) == 0
    assert torch.count_nonzero(stem_bn.weight.grad[width:]) == 0
    last = config[blueprint.last_unit]
    assert supernet.classifier.weight.grad[:, :last].abs().sum() > 0
    assert torch.count_nonzero(supernet.classifier.weight.grad[:, last:]) == 0


def test_set_channels_needs_a_slimmable_network():
    blueprint = small_blueprint("mobilenet_v1")
    plain = Network(blueprint, blueprint.units)
    with pytest.raises(RuntimeError):
        plain.set_channels(blueprint.units)


def test_sliced_state_dict_keeps_lower_index_channels():
    blueprint, space, supernet = make_supernet("mobilenet_v1", seed=2)
    config = space.minimum
    plain = Network(blueprint, config)
    state = sliced_state_dict(supernet, plain)
    assert set(state) == set(plain.state_dict())
    stem = "blocks.0.body.0.0.weight"
    assert state[stem].shape == (config["stem"], 3, 3, 3)
    assert torch.equal(state[stem], supernet.state_dict()[stem][: config["stem"]])
    pointwise = "blocks.1.body.1.0.weight"  # stage0.0's 1x1 conv: stem -> stage0.0
    assert torch.equal(state[pointwise], supernet.state_dict()[pointwise][: config["stage0.0"], : config["stem"]])
    # A copy: training the plain network must not change the supernet.
    state[stem].add_(1.0)
    assert not torch.equal(state[stem], supernet.state_dict()[stem][: config["stem"]])


# ----------------------------------------------------------------------------- channel space


@pytest.mark.parametrize("divisor", [1, 2, 4, 8, 16])
@pytest.mark.parametrize("groups", [1, 2, 3, 5, 8, 10, 12])
def test_unit_choices_properties(groups, divisor):
    for multiple in range(1, 60):
        top = multiple * divisor
        choices = unit_choices(top, groups, divisor)
        assert choices == sorted(set(choices)), (top, choices)
        assert choices[-1] == top
        assert all(c % divisor == 0 and 0 < c <= top for c in choices)
        assert len(choices) <= groups
        one_group = max(divisor, round(top / groups / divisor) * divisor)
        assert choices[0] == min(top, one_group), (top, groups, divisor, choices)


@pytest.mark.parametrize("groups, divisor, step", [(10, 8, 1), (10, 8, 4), (4, 2, 3), (6, 1, 5)])
def test_unit_choices_are_even_groups(groups, divisor, step):
    # When the maximum splits into whole groups of the divisor, the choices are exactly g/G of it.
    top = groups * divisor * step
    assert unit_choices(top, groups, divisor) == [divisor * step * (g + 1) for g in range(groups)]


def test_unit_choices_deduplicates_and_honours_an_explicit_minimum():
    assert unit_choices(16, 10, 8) == [8, 16]
    choices = unit_choices(96, 10, 8, min_channels=24)
    assert choices[0] == 24 and choices[-1] == 96
    assert choices == sorted(set(choices)) and all(c % 8 == 0 for c in choices)
    with pytest.raises(ValueError):
        unit_choices(0, 10, 8)
    with pytest.raises(ValueError):
        unit_choices(64, 0, 8)


def test_space_around_spans_the_width_range():
    blueprint = build_blueprint("mobilenet_v2")
    space = ChannelSpace.around(blueprint, 0.15, 1.5, 10, 8)
    assert set(space.choices) == set(blueprint.units)
    for unit, base in blueprint.units.items():
        choices = space.choices[unit]
        assert choices == sorted(set(choices))
        assert all(c % 8 == 0 for c in choices)
        assert abs(choices[-1] - 1.5 * base) <= 4
        assert choices[0] == max(8, round(0.15 * base / 8) * 8)


def test_problems_reports_bad_configurations():
    blueprint = small_blueprint("mobilenet_v2")
    space = ChannelSpace.around(blueprint, 0.15, 1.5, 10, 8)
    assert space.problems(space.maximum) is None
    assert space.problems(space.minimum) is None

    unit = "stage1"
    not_a_choice = dict(space.maximum, **{unit: space.choices[unit][0] + 1})
    message = space.problems(not_a_choice)
    assert message is not None and unit in message and str(space.choices[unit][0] + 1) in message

    above = dict(space.maximum, **{unit: space.choices[unit][-1] + 8})
    assert space.problems(above) is not None

    missing = {u: c for u, c in space.maximum.items() if u != unit}
    message = space.problems(missing)
    assert message is not None and "missing" in message and unit in message

    unknown = dict(space.maximum, bogus=8)
    message = space.problems(unknown)
    assert message is not None and "bogus" in message


def test_sampling_draws_different_valid_configurations():
    blueprint = small_blueprint("resnet50")
    space = ChannelSpace.around(blueprint, 0.15, 1.5, 10, 8)
    generator = torch.Generator().manual_seed(0)
    samples = [space.sample(generator) for _ in range(20)]
    for config in samples:
        assert list(config) == list(space.choices)
        assert space.problems(config) is None
    assert len({tuple(c.values()) for c in samples}) == len(samples)
    # Every unit takes more than one value across the draws.
    for unit in space.choices:
        assert len({c[unit] for c in samples}) > 1, unit
    # Same seed, same draws.
    again = torch.Generator().manual_seed(0)
    assert [space.sample(again) for _ in range(20)] == samples


def test_smaller_steps_down_one_choice():
    blueprint = small_blueprint("mnasnet")
    space = ChannelSpace.around(blueprint, 0.15, 1.5, 10, 8)
    config = dict(space.maximum)
    for unit, choices in space.choices.items():
        assert space.smaller(config, unit) == (choices[-2] if len(choices) > 1 else None)
        assert space.smaller(space.minimum, unit) is None
    unit = "stage2"
    choices = space.choices[unit]
    assert len(choices) >= 3
    steps = []
    while (value := space.smaller(config, unit)) is not None:
        steps.append(value)
        config[unit] = value
    assert steps == choices[-2::-1]
    assert config[unit] == choices[0]


# ----------------------------------------------------------------------------- depth and measurement


@pytest.mark.parametrize("arch", ARCHS)
def test_scaled_depth(arch):
    default = default_depth(arch)
    assert scaled_depth(arch, 1.0) == default
    previous = None
    for multiplier in (0.01, 0.25, 0.5, 0.75, 1.0):
        depth = scaled_depth(arch, multiplier)
        assert len(depth) == len(default)
        assert all(1 <= d <= full for d, full in zip(depth, default))
        for d, full, scalable in zip(depth, default, depth_scalable(arch)):
            if not scalable:
                assert d == full
            elif multiplier == 0.01:
                assert d == min(2, full)  # stack-average needs a block 1 wherever the stage has one
        if previous is not None:
            assert all(a <= b for a, b in zip(previous, depth))
        previous = depth
        # Every scaled depth builds, with one block list entry per counted block.
        blueprint = build_blueprint(arch, depth=depth)
        assert [len(stage) for stage in blueprint.stages] == list(depth)
    with pytest.raises(SlimnetError):
        scaled_depth(arch, 0)
    with pytest.raises(SlimnetError):
        build_blueprint(arch, depth=default[:-1])
    with pytest.raises(SlimnetError):
        build_blueprint(arch, depth=(0,) + tuple(default[1:]))


def test_cpu_latency_restores_threads_and_runs_a_plain_network():
    blueprint = small_blueprint("mobilenet_v1")
    model = Network(blueprint, ChannelSpace.around(blueprint, 0.15, 1.5, 10, 8).minimum)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        latency = cpu_latency_ms(model, blueprint.in_channels, RESOLUTION, warmup=1, runs=3)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    assert latency > 0
    assert not model.training
