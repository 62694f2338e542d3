"""Params that are valid numbers but meaningless for the chosen network fail before any work, in
one line naming the key and the smallest sensible value (pipeline.specs.check_network)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from slimnet.config import Params, load_params
from slimnet.console.errors import SlimnetError
from slimnet.pipeline import specs
from slimnet.pipeline.specs import check_network
from slimnet.space.limits import has_choices, total_stride
from slimnet.space.models import build_blueprint, default_depth
from slimnet.space.names import ARCHS
from tests.pipeline_project import slimnet_in

REPO = Path(__file__).resolve().parents[1]


def params(tmp_path: Path, text: str) -> Params:
    path = tmp_path / "params.yaml"
    path.write_text(text)
    return load_params(path)


def problem(p: Params, full_resolution: int | None = 28) -> str:
    with pytest.raises(SlimnetError) as error:
        check_network(p, full_resolution)
    message = str(error.value)
    assert message and "\n" not in message
    return message


@pytest.mark.parametrize(
    "arch, cifar, stride",
    [
        ("mobilenet_v2", False, 32),  # stem and four stride-2 stages
        ("mobilenet_v2", True, 8),  # stride-1 stem, one stride-2 stage less
        ("mobilenet_v1", False, 32),
        ("mnasnet", True, 8),
        ("resnet18", False, 32),  # stride-2 stem, max-pool, three stride-2 stages
        ("resnet50", True, 8),
    ],
)
def test_total_stride_comes_from_the_blueprint(arch, cifar, stride):
    assert total_stride(build_blueprint(arch, cifar=cifar)) == stride
    half = tuple(max(1, count // 2) for count in default_depth(arch))
    assert total_stride(build_blueprint(arch, cifar=cifar, depth=half)) == stride  # depth keeps every stride


def test_the_defaults_and_every_preset_pass():
    check_network(load_params(REPO / "params.yaml"), 28)
    for preset in sorted((REPO / "presets").glob("*.yaml")):
        p = load_params(preset)
        check_network(p, p.data.resolution or 32)  # the CIFAR preset: 32 px images


@pytest.mark.parametrize(
    "text, shown",
    [
        # The case: 3x3 search images for a MobileNetV2 (CIFAR variant: total stride 8).
        ("transfer:\n  resolution: 3\n", "transfer.resolution: 3 is below the total stride 8 of the projected mobilenet_v2"),
        ("transfer:\n  resolution: 7\n", "set transfer.resolution >= 8"),
        (
            "model:\n  cifar: false\ntransfer:\n  resolution: 16\ndata:\n  resolution: 32\n",
            "transfer.resolution: 16 is below the total stride 32",
        ),
        ("data:\n  resolution: 4\n", "data.resolution: 4 is below the total stride 8 of mobilenet_v2 (CIFAR variant)"),
        ("model:\n  arch: resnet18\n  cifar: false\ndata:\n  resolution: 24\n", "set data.resolution >= 32"),
        # null: the dataset's own 28 px, too small for the ImageNet variant's 32.
        ("model:\n  cifar: false\n", "data.resolution: null (the dataset's own 28 px) is below the total stride 32"),
        # Every unit of the projected network rounds to one width: nothing to search.
        ("supernet:\n  min_width: 1.0\n  max_width: 1.01\n  divisor: 32\n", "supernet.max_width: 1.01"),
        ("supernet:\n  min_width: 1.0\n  max_width: 1.01\n  divisor: 32\n", "set supernet.max_width >= 1.02"),
    ],
)
def test_meaningless_values_fail_in_one_line_naming_the_key_and_the_smallest_value(tmp_path, text, shown):
    assert shown in problem(params(tmp_path, text))


@pytest.mark.parametrize(
    "text",
    [
        "transfer:\n  resolution: 8\n",  # exactly the total stride
        "data:\n  resolution: 8\n",
        "model:\n  cifar: false\ntransfer:\n  resolution: 32\ndata:\n  resolution: 32\n",
        "supernet:\n  min_width: 1.0\n  max_width: 1.02\n  divisor: 32\n",  # the smallest value the error names
        "transfer:\n  depth: 0.001\n",  # every stage keeps a block however small the depth
    ],
)
def test_the_smallest_sensible_values_pass(tmp_path, text):
    check_network(params(tmp_path, text), 28)


def test_an_unknown_dataset_size_is_checked_once_known(tmp_path):
    p = params(tmp_path, "model:\n  cifar: false\ntransfer:\n  resolution: null\n")
    check_network(p, None)  # before the data stage: data.resolution null is the dataset's own size, not known yet
    assert "data.resolution" in problem(p, 28)
    check_network(p, 32)


def test_the_width_check_is_the_supernets_own_rounding(tmp_path):
    p = params(tmp_path, "supernet:\n  min_width: 1.0\n  max_width: 1.01\n  divisor: 32\n")
    projected = specs.projected_uniform(p.model, p.transfer, p.supernet, specs._ANY_INPUT).blueprint()
    assert not has_choices(projected, 1.0, 1.01, 10, 32)
    assert has_choices(projected, 1.0, 1.02, 10, 32)


@pytest.mark.parametrize("arch", ARCHS)
def test_no_depth_leaves_a_stage_empty_today(arch, tmp_path):
    for depth in (1.0, 0.5, 0.1, 1e-6):
        assert min(specs.scaled_depth(arch, depth)) >= 1


def test_a_depth_that_empties_a_stage_names_the_smallest_that_does_not(tmp_path, monkeypatch):
    # scaled_depth floors every stage at a block; were it plain rounding down, 0.3 of ResNet-18's
    # two blocks per stage would leave none, and 0.5 is the smallest depth that keeps one.
    def rounding_down(arch: str, multiplier: float) -> tuple[int, ...]:
        return tuple(int(count * multiplier + 1e-9) for count in default_depth(arch))

    monkeypatch.setattr(specs, "scaled_depth", rounding_down)
    p = params(tmp_path, "model:\n  arch: resnet18\ntransfer:\n  depth: 0.3\n")
    assert problem(p) == "transfer.depth: 0.3 leaves stage 0 of resnet18 (CIFAR variant) with no block: set transfer.depth >= 0.5"


@pytest.mark.parametrize(
    "command, text, key",
    [
        ("project", "transfer:\n  resolution: 3\n", "transfer.resolution"),
        ("supernet", "supernet:\n  min_width: 1.0\n  max_width: 1.01\n  divisor: 32\n", "supernet.max_width"),
        ("latency", "model:\n  cifar: false\n", "data.resolution"),
    ],
)
def test_the_stage_commands_stop_before_any_work(tmp_path, command, text, key):
    (tmp_path / "bad.yaml").write_text(text)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "meta.json").write_text(json.dumps({"resolution": 28}))  # as the data stage wrote it
    before = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*"))
    result = slimnet_in(tmp_path, command, "--params", "bad.yaml")  # in this process: no start-up
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and key in lines[0] and ">=" in lines[0], result.stderr
    assert "Traceback" not in result.stderr
    assert isinstance(result.exception, SystemExit)  # the stage's exit, not an error escaping it
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")) == before  # nothing written
