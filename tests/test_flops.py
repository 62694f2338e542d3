"""The analytic cost model against published figures, torchvision and fvcore."""

import itertools
import logging
import warnings

import pytest
import torch
from torch import nn

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # fvcore imports torch.jit.script, deprecated in torch 2.x
    from fvcore.nn import FlopCountAnalysis

from slimnet.nn.network import Network
from slimnet.space.channels import ChannelSpace
from slimnet.space.flops import cost
from slimnet.space.models import ARCHS, build_blueprint, scaled_depth

pytestmark = pytest.mark.usefixtures("single_thread")

logging.getLogger("fvcore").setLevel(logging.ERROR)


def tv_models():
    """torchvision's model builders, imported when a test first builds one: at module level every
    xdist worker paid 2 s for them at collection, also the one that never runs this file."""
    import torchvision.models

    return torchvision.models


def numel(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# (id, arch, build_blueprint kwargs, resolution, FLOPs, params, torchvision builder or None)
REFERENCE = [
    (
        "mbv2-1.0",
        "mobilenet_v2",
        {"width": 1.0},
        224,
        300_774_272,
        3_504_872,
        lambda: tv_models().mobilenet_v2(width_mult=1.0),
    ),
    (
        "mbv2-0.75",
        "mobilenet_v2",
        {"width": 0.75},
        224,
        209_069_792,
        2_636_424,
        lambda: tv_models().mobilenet_v2(width_mult=0.75),
    ),
    (
        "mbv2-1.4",
        "mobilenet_v2",
        {"width": 1.4},
        224,
        582_195_824,
        6_108_776,
        lambda: tv_models().mobilenet_v2(width_mult=1.4),
    ),
    (
        "mbv2-cifar-1.0",
        "mobilenet_v2",
        {"width": 1.0, "cifar": True, "num_classes": 10},
        32,
        87_976_448,
        2_236_682,
        lambda: tv_models().mobilenet_v2(width_mult=1.0, num_classes=10),
    ),
    (
        "mbv2-cifar-0.75",
        "mobilenet_v2",
        {"width": 0.75, "cifar": True, "num_classes": 10},
        32,
        59_310_080,
        1_368_234,
        lambda: tv_models().mobilenet_v2(width_mult=0.75, num_classes=10),
    ),
    (
        "mbv2-cifar-0.5",
        "mobilenet_v2",
        {"width": 0.5, "cifar": True, "num_classes": 10},
        32,
        27_969_024,
        700_490,
        lambda: tv_models().mobilenet_v2(width_mult=0.5, num_classes=10),
    ),
    ("resnet50", "resnet50", {}, 224, 4_089_184_256, 25_557_032, lambda: tv_models().resnet50()),
    ("resnet18", "resnet18", {}, 224, 1_814_073_344, 11_689_512, lambda: tv_models().resnet18()),
    ("mnasnet1.0", "mnasnet", {}, 224, 314_415_872, 4_383_312, lambda: tv_models().mnasnet1_0()),
]


@pytest.mark.parametrize(
    "arch, kwargs, resolution, flops, params, torchvision_model", [r[1:] for r in REFERENCE], ids=[r[0] for r in REFERENCE]
)
def test_reference_figures(arch, kwargs, resolution, flops, params, torchvision_model):
    blueprint = build_blueprint(arch, **kwargs)
    result = cost(blueprint, blueprint.units, resolution)
    assert result.flops == flops
    assert result.params == params
    assert numel(Network(blueprint, blueprint.units)) == params
    assert numel(torchvision_model()) == params


@pytest.mark.parametrize(
    "arch, width, torchvision_model",
    [
        ("mobilenet_v2", 0.35, lambda: tv_models().mobilenet_v2(width_mult=0.35)),
        ("mobilenet_v2", 0.5, lambda: tv_models().mobilenet_v2(width_mult=0.5)),
        ("mobilenet_v2", 1.3, lambda: tv_models().mobilenet_v2(width_mult=1.3)),
        ("mnasnet", 0.5, lambda: tv_models().mnasnet0_5()),
        ("mnasnet", 0.75, lambda: tv_models().mnasnet0_75()),
        ("mnasnet", 1.3, lambda: tv_models().mnasnet1_3()),
        ("resnet34", 1.0, lambda: tv_models().resnet34()),
        ("resnet101", 1.0, lambda: tv_models().resnet101()),
    ],
)
def test_params_match_torchvision_at_other_widths(arch, width, torchvision_model):
    blueprint = build_blueprint(arch, width=width)
    params = cost(blueprint, blueprint.units, 224).params
    assert params == numel(torchvision_model())
    assert params == numel(Network(blueprint, blueprint.units))


def test_mobilenet_v1_reference():
    blueprint = build_blueprint("mobilenet_v1")
    result = cost(blueprint, blueprint.units, 224)
    assert round(result.flops / 1e6) == 569
    assert round(result.params / 1e6, 1) == 4.2
    assert numel(Network(blueprint, blueprint.units)) == result.params


def test_flops_scale_with_resolution_squared_for_a_stride_free_count():
    # Doubling a resolution that stays divisible by every stride quadruples all conv MACs; only
    # the classifier's MACs (features x classes) stay fixed.
    blueprint = build_blueprint("mobilenet_v2")
    small, large = cost(blueprint, blueprint.units, 64), cost(blueprint, blueprint.units, 128)
    head = blueprint.units["last"] * blueprint.num_classes
    assert large.flops - head == 4 * (small.flops - head)
    assert large.params == small.params


# ----------------------------------------------------------------------------- fvcore


def fvcore_flops(model: nn.Module, in_channels: int, resolution: int) -> int:
    model.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        analysis = FlopCountAnalysis(model, torch.randn(1, in_channels, resolution, resolution))
        analysis.unsupported_ops_warnings(False)
        analysis.uncalled_modules_warnings(False)
        with torch.no_grad():
            by_operator = analysis.by_operator()
    assert by_operator.get("conv", 0) > 0
    return sum(by_operator.get(op, 0) for op in ("conv", "linear", "addmm", "matmul"))


def shallow(arch: str) -> tuple[int, ...] | None:
    return (1, 1, 2, 1) if arch == "resnet101" else None


@pytest.mark.parametrize("arch", ARCHS)
def test_fvcore_matches_on_sampled_configuration(arch):
    """A configuration drawn from the supernet space, ImageNet layout, at 64 px."""
    blueprint = build_blueprint(arch, depth=shallow(arch), num_classes=37)
    space = ChannelSpace.around(blueprint, 0.15, 1.5, 10, 8)
    generator = torch.Generator().manual_seed(ARCHS.index(arch))
    channels = space.sample(generator)
    assert channels != blueprint.units
    model = Network(blueprint, channels)
    result = cost(blueprint, channels, 64)
    assert result.flops == fvcore_flops(model, 3, 64)
    assert result.params == numel(model)


@pytest.mark.parametrize("arch", ARCHS)
def test_fvcore_matches_on_arbitrary_channels(arch):
    """Channel counts that are not multiples of anything, odd input sizes, CIFAR layout, shallow depth."""
    depth = scaled_depth(arch, 0.5) if arch != "resnet101" else (1, 1, 2, 1)
    blueprint = build_blueprint(arch, depth=depth, cifar=True, in_channels=1, num_classes=10)
    generator = torch.Generator().manual_seed(100 + ARCHS.index(arch))
    channels = {
        unit: int(torch.randint(max(1, base // 4), base + base // 2 + 2, (1,), generator=generator))
        for unit, base in blueprint.units.items()
    }
    resolution = (29, 33, 40)[ARCHS.index(arch) % 3]
    model = Network(blueprint, channels)
    result = cost(blueprint, channels, resolution)
    assert result.flops == fvcore_flops(model, 1, resolution)
    assert result.params == numel(model)


# ----------------------------------------------------------------------------- memory


def measured_memory(model: Network, in_channels: int, resolution: int) -> int:
    """4 bytes x (parameters + input + every conv/pool output + pooled features + logits), by running it."""
    counted = []
    hooks = [
        m.register_forward_hook(lambda module, inputs, output: counted.append(output.numel()))
        for m in model.modules()
        if isinstance(m, (nn.Conv2d, nn.MaxPool2d))
    ]
    hooks.append(
        model.classifier.register_forward_hook(lambda module, inputs, output: counted.extend([inputs[0].numel(), output.numel()]))
    )
    x = torch.randn(1, in_channels, resolution, resolution)
    try:
        with torch.no_grad():
            model.eval()(x)
    finally:
        for hook in hooks:
            hook.remove()
    return 4 * (numel(model) + x.numel() + sum(counted))


@pytest.mark.parametrize("arch, resolution", [("mobilenet_v1", 32), ("mobilenet_v2", 45), ("resnet18", 37), ("resnet50", 45)])
def test_memory_counts_weights_and_feature_maps(arch, resolution):
    blueprint = build_blueprint(arch, depth=scaled_depth(arch, 0.5), num_classes=10)
    space = ChannelSpace.around(blueprint, 0.15, 1.5, 10, 8)
    channels = space.sample(torch.Generator().manual_seed(7))
    result = cost(blueprint, channels, resolution)
    assert result.memory == measured_memory(Network(blueprint, channels), 3, resolution)


@pytest.mark.parametrize("arch", ARCHS)
def test_memory_positive_and_grows_with_width(arch):
    costs = []
    for width in (0.25, 0.5, 1.0, 1.5):
        blueprint = build_blueprint(arch, width=width, depth=shallow(arch))
        costs.append(cost(blueprint, blueprint.units, 64))
    assert all(c.memory > 0 for c in costs)
    assert all(c.memory > 4 * c.params for c in costs)  # feature maps are counted too
    for smaller, larger in itertools.pairwise(costs):
        assert smaller.memory < larger.memory
        assert smaller.flops < larger.flops
        assert smaller.params < larger.params


@pytest.mark.parametrize("arch", ARCHS)
def test_cost_monotone_in_every_unit(arch):
    """Widening any single unit never lowers FLOPs, params or memory (and raises params)."""
    blueprint = build_blueprint(arch, depth=shallow(arch) or scaled_depth(arch, 0.5))
    space = ChannelSpace.around(blueprint, 0.15, 1.5, 10, 8)
    base = space.minimum
    reference = cost(blueprint, base, 32)
    for unit in blueprint.units:
        wider = dict(base, **{unit: space.maximum[unit]})
        result = cost(blueprint, wider, 32)
        assert result.params > reference.params, unit
        assert result.flops > reference.flops, unit
        assert result.memory > reference.memory, unit
