"""Architecture specs (JSON files) and the import of published AutoSlim channel lists."""

import json

import pytest

from slimnet.console.errors import SlimnetError
from slimnet.nn.network import plain_network
from slimnet.space.models import build_blueprint, default_depth
from slimnet.space.published import import_autoslim, parse_channel_list
from slimnet.space.spec import check_channels, load_spec, save_spec, uniform_spec


def one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert message and "\n" not in message and "\r" not in message
    return message


def write_json(path, obj) -> None:
    path.write_text(json.dumps(obj))


def spec_dict(**overrides) -> dict:
    spec = uniform_spec("mobilenet_v2", 0.75, resolution=32, num_classes=10, cifar=True, depth=(1, 1, 2, 2, 2, 2, 1))
    raw = spec.model_dump(mode="json")
    raw.update(overrides)
    return raw


# ----------------------------------------------------------------------------- round trip


@pytest.mark.parametrize("arch", ["mobilenet_v1", "mobilenet_v2", "mnasnet", "resnet18", "resnet50"])
def test_spec_json_round_trip(tmp_path, arch):
    spec = uniform_spec(arch, 0.5, resolution=48, num_classes=7, in_channels=1, cifar=True)
    # Non-uniform channels survive the trip too, in the architecture's unit order.
    channels = {unit: value + 8 * (i % 3) for i, (unit, value) in enumerate(spec.channels.items())}
    spec = spec.with_channels(dict(reversed(list(channels.items()))), note="edited")
    path = tmp_path / "nested" / f"{arch}.json"
    save_spec(spec, path)
    loaded = load_spec(path)
    assert loaded == spec
    assert loaded.channels == channels
    assert list(loaded.channels) == list(build_blueprint(arch, depth=spec.depth, cifar=True).units)
    assert loaded.note == "edited" and loaded.in_channels == 1 and loaded.num_classes == 7
    assert loaded.cost() == spec.cost()
    # What was written is plain JSON with the spec's fields.
    raw = json.loads(path.read_text())
    assert raw["arch"] == arch and raw["resolution"] == 48 and raw["channels"] == spec.channels
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary files left behind


def test_spec_cost_uses_its_channels():
    wide = uniform_spec("resnet18", 1.0, resolution=224, num_classes=1000)
    narrow = uniform_spec("resnet18", 0.5, resolution=224, num_classes=1000)
    assert wide.cost().flops == 1_814_073_344
    assert narrow.cost().flops < wide.cost().flops
    assert narrow.with_channels(wide.channels).cost() == wide.cost()


# ----------------------------------------------------------------------------- load errors


def test_load_spec_missing_file(tmp_path):
    path = tmp_path / "absent.json"
    with pytest.raises(SlimnetError) as error:
        load_spec(path)
    message = one_line(error)
    assert str(path) in message and "not found" in message


def test_load_spec_invalid_json(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('{"arch": "mobilenet_v2",\n  "resolution": }\n')
    with pytest.raises(SlimnetError) as error:
        load_spec(path)
    message = one_line(error)
    assert "not valid JSON" in message and "line 2" in message


def test_load_spec_unknown_arch(tmp_path):
    path = tmp_path / "spec.json"
    write_json(path, spec_dict(arch="resnet9000"))
    with pytest.raises(SlimnetError) as error:
        load_spec(path)
    message = one_line(error)
    assert "arch" in message and "resnet9000" in message and "mobilenet_v2" in message


def test_load_spec_missing_unit(tmp_path):
    raw = spec_dict()
    del raw["channels"]["stage3"]
    path = tmp_path / "spec.json"
    write_json(path, raw)
    with pytest.raises(SlimnetError) as error:
        load_spec(path)
    message = one_line(error)
    assert "missing" in message and "stage3" in message


def test_load_spec_extra_unit(tmp_path):
    raw = spec_dict()
    raw["channels"]["stage9.0.expand"] = 64
    path = tmp_path / "spec.json"
    write_json(path, raw)
    with pytest.raises(SlimnetError) as error:
        load_spec(path)
    message = one_line(error)
    assert "unknown unit" in message and "stage9.0.expand" in message


def test_load_spec_unit_of_a_deeper_network_is_extra(tmp_path):
    # Channels of the default-depth network do not fit a spec of half the depth.
    raw = spec_dict()
    raw["channels"] = uniform_spec("mobilenet_v2", 0.75, resolution=32, num_classes=10, cifar=True).channels
    path = tmp_path / "spec.json"
    write_json(path, raw)
    with pytest.raises(SlimnetError) as error:
        load_spec(path)
    assert "unknown unit" in one_line(error)


@pytest.mark.parametrize("value", [0, -8])
def test_load_spec_non_positive_channels(tmp_path, value):
    raw = spec_dict()
    raw["channels"]["stage2"] = value
    path = tmp_path / "spec.json"
    write_json(path, raw)
    with pytest.raises(SlimnetError) as error:
        load_spec(path)
    message = one_line(error)
    assert "channels.stage2" in message and "positive" in message


@pytest.mark.parametrize("field, value", [("resolution", 0), ("num_classes", -1), ("in_channels", 0)])
def test_load_spec_non_positive_sizes(tmp_path, field, value):
    path = tmp_path / "spec.json"
    write_json(path, spec_dict(**{field: value}))
    with pytest.raises(SlimnetError) as error:
        load_spec(path)
    assert field in one_line(error)


def test_load_spec_wrong_depth_and_unknown_field(tmp_path):
    path = tmp_path / "spec.json"
    write_json(path, spec_dict(depth=[1, 2, 3]))
    with pytest.raises(SlimnetError) as error:
        load_spec(path)
    assert "depth" in one_line(error)

    write_json(path, spec_dict(widht=1.0))
    with pytest.raises(SlimnetError) as error:
        load_spec(path)
    assert "widht" in one_line(error)


def test_check_channels_against_a_maximum():
    spec = uniform_spec("resnet18", 1.0, resolution=32, num_classes=10, cifar=True)
    maximum = {unit: value * 2 for unit, value in spec.channels.items()}
    assert check_channels(spec, maximum) == spec
    assert check_channels(spec.with_channels(maximum), maximum).channels == maximum
    too_wide = dict(spec.channels, stage3=maximum["stage3"] + 1)
    with pytest.raises(SlimnetError) as error:
        check_channels(spec.with_channels(too_wide), maximum)
    message = one_line(error)
    assert "channels.stage3" in message and str(maximum["stage3"]) in message


# ----------------------------------------------------------------------------- published lists


def mobilenet_v2_list(channels: dict, classes: int = 1000) -> list[int]:
    values = [channels["stem"], channels["stage0"]]
    for s, count in enumerate(default_depth("mobilenet_v2")):
        if s > 0:
            for b in range(count):
                values += [channels[f"stage{s}.{b}.expand"], channels[f"stage{s}"]]
    return values + [channels["last"], classes]


def mobilenet_v1_list(channels: dict, classes: int = 1000) -> list[int]:
    values = [channels["stem"]]
    for s, count in enumerate(default_depth("mobilenet_v1")):
        values += [channels[f"stage{s}.{b}"] for b in range(count)]
    return values + [classes]


def resnet50_list(channels: dict, classes: int = 1000) -> list[int]:
    values = [channels["stem"]]
    for s, count in enumerate(default_depth("resnet50")):
        stage = f"stage{s + 1}"
        values.append(channels[stage])
        for b in range(count):
            values += [channels[f"{stage}.{b}.mid1"], channels[f"{stage}.{b}.mid2"], channels[stage]]
    return values + [classes]


PUBLISHED = [
    ("mobilenet_v2", mobilenet_v2_list, 36, 300_774_272),
    ("mobilenet_v1", mobilenet_v1_list, 15, None),
    ("resnet50", resnet50_list, 54, 4_089_184_256),
]


@pytest.mark.parametrize("arch, to_list, length, flops", PUBLISHED, ids=[p[0] for p in PUBLISHED])
def test_import_autoslim_of_a_uniform_network(arch, to_list, length, flops):
    uniform = uniform_spec(arch, 1.0, resolution=224, num_classes=1000)
    values = to_list(uniform.channels)
    assert len(values) == length
    spec = import_autoslim(arch, values)
    assert spec.channels == uniform.channels
    assert list(spec.channels) == list(uniform.channels)
    assert spec.depth == default_depth(arch) and spec.num_classes == 1000 and spec.resolution == 224
    assert spec.cost() == uniform.cost()
    if flops is not None:
        assert spec.cost().flops == flops
    else:
        assert round(spec.cost().flops / 1e6) == 569


def test_import_autoslim_uses_the_list_values():
    # Distinct per-block widths land in the right units (not only the uniform defaults).
    uniform = uniform_spec("resnet50", 0.5, resolution=224, num_classes=1000)
    channels = {unit: value + 8 * (i % 4) for i, (unit, value) in enumerate(uniform.channels.items())}
    spec = import_autoslim("resnet50", resnet50_list(channels, classes=100), resolution=160)
    assert spec.channels == channels and spec.num_classes == 100 and spec.resolution == 160


def test_import_official_autoslim_mobilenet_v2_207m():
    # The smallest released AutoSlim-MobileNetV2 (JiahuiYu/slimmable_networks,
    # apps/autoslim_mobilenet_v2_train_val.yml), published as 207M FLOPs.
    values = [
        8,
        8,
        96,
        16,
        96,
        16,
        96,
        24,
        144,
        24,
        144,
        24,
        144,
        48,
        288,
        48,
        288,
        48,
        288,
        48,
        288,
        64,
        432,
        64,
        432,
        64,
        648,
        176,
        720,
        176,
        720,
        176,
        1440,
        280,
        1920,
        1000,
    ]
    spec = import_autoslim("mobilenet_v2", values)
    assert spec.channels["stage5"] == 176 and spec.channels["stage6.0.expand"] == 1440 and spec.channels["last"] == 1920
    assert round(spec.cost().flops / 1e6) == 207


def test_import_official_autoslim_resnet50_570m():
    # The smallest released AutoSlim-ResNet-50 (JiahuiYu/slimmable_networks,
    # apps/autoslim_resnet_train_val.yml), published as 570M FLOPs.
    values = [
        24,
        72,
        8,
        16,
        72,
        16,
        16,
        72,
        8,
        8,
        72,
        240,
        16,
        24,
        240,
        16,
        24,
        240,
        16,
        16,
        240,
        16,
        24,
        240,
        704,
        72,
        72,
        704,
        48,
        72,
        704,
        48,
        72,
        704,
        72,
        72,
        704,
        48,
        48,
        704,
        48,
        48,
        704,
        1680,
        280,
        240,
        1680,
        120,
        200,
        1680,
        280,
        280,
        1680,
        1000,
    ]
    spec = import_autoslim("resnet50", values)
    assert spec.channels["stage1"] == 72 and spec.channels["stage4.0.mid2"] == 240 and spec.channels["stage4"] == 1680
    assert round(spec.cost().flops / 1e6) == 570


def test_plain_network_of_a_spec_has_its_channels():
    uniform = uniform_spec("mnasnet", 1.0, resolution=64, num_classes=10, depth=(1, 2, 2, 2, 1, 2, 1))
    channels = {unit: max(8, value - 8 * (i % 3)) for i, (unit, value) in enumerate(uniform.channels.items())}
    spec = uniform.with_channels(channels)
    model = plain_network(spec)
    assert sum(p.numel() for p in model.parameters()) == spec.cost().params
    assert model.classifier.in_features == channels["last"] and model.classifier.out_features == 10
    assert model.blocks[0].body[0][0].out_channels == channels["stem"]


@pytest.mark.parametrize("arch, to_list, length, flops", PUBLISHED, ids=[p[0] for p in PUBLISHED])
def test_import_autoslim_rejects_wrong_length(arch, to_list, length, flops):
    values = to_list(uniform_spec(arch, 1.0, resolution=224, num_classes=1000).channels)
    for wrong in (values[:-1], values + [8]):
        with pytest.raises(SlimnetError) as error:
            import_autoslim(arch, wrong)
        message = one_line(error)
        assert str(length) in message and str(len(wrong)) in message


def test_import_autoslim_rejects_broken_residual_coupling_mobilenet_v2():
    values = mobilenet_v2_list(uniform_spec("mobilenet_v2", 1.0, resolution=224, num_classes=1000).channels)
    # Block stage2.1 (the second block of stage 2): its out follows its expand width.
    # Index: stem, stage0, stage1 x2 blocks x2 values, then stage2.0 (expand, out), stage2.1 (expand, out).
    position = 2 + 2 * 2 + 2 + 1
    assert values[position] == 32
    values[position] = 40
    with pytest.raises(SlimnetError) as error:
        import_autoslim("mobilenet_v2", values)
    message = one_line(error)
    assert "residual" in message and "2.1" in message and "40" in message and "32" in message


def test_import_autoslim_rejects_broken_residual_coupling_resnet50():
    values = resnet50_list(uniform_spec("resnet50", 1.0, resolution=224, num_classes=1000).channels)
    # Stage 3 starts after stem(1) + stage1 (1 + 3*3) + stage2 (1 + 4*3); its block 3.1's out:
    position = 1 + 10 + 13 + 1 + 3 + 2
    assert values[position] == 1024
    values[position] = 512
    with pytest.raises(SlimnetError) as error:
        import_autoslim("resnet50", values)
    message = one_line(error)
    assert "residual" in message and "3.1" in message


def test_import_autoslim_rejects_other_archs_and_non_positive():
    with pytest.raises(SlimnetError) as error:
        import_autoslim("mnasnet", [8] * 20)
    assert "mnasnet" in one_line(error)
    values = mobilenet_v1_list(uniform_spec("mobilenet_v1", 1.0, resolution=224, num_classes=1000).channels)
    values[3] = 0
    with pytest.raises(SlimnetError) as error:
        import_autoslim("mobilenet_v1", values)
    assert "positive" in one_line(error)


def test_parse_channel_list():
    assert parse_channel_list("8,16, 24") == [8, 16, 24]
    assert parse_channel_list("[32, 64, 1000]") == [32, 64, 1000]
    for bad in ("a,b", "8,1.5", "8;16"):
        with pytest.raises(SlimnetError) as error:
            parse_channel_list(bad)
        assert bad in one_line(error)
    with pytest.raises(SlimnetError) as error:
        parse_channel_list("8,0,16")
    assert "positive" in one_line(error)
