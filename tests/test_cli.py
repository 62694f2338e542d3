"""The command line: arch tools, and bad input failing with one line, exit code 2, nothing written."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from slimnet.cli import app as stage_app
from slimnet.pipeline.arch_tools import with_arch_tools

app = with_arch_tools(stage_app)

runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, list(args))


def error_line(result) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


def test_arch_uniform_and_show_report_the_published_figures(tmp_path):
    spec = tmp_path / "mv2.json"
    result = run("arch", "uniform", "--arch", "mobilenet_v2", "--width", "0.75", "--out", str(spec))
    assert result.exit_code == 0, result.output
    shown = json.loads(run("arch", "show", str(spec), "--json").stdout)
    assert (shown["flops"], shown["params"]) == (209_069_792, 2_636_424)
    assert shown["memory"] > 0

    cifar = tmp_path / "cifar.json"
    assert run("arch", "uniform", "--arch", "mobilenet_v2", "--cifar", "--out", str(cifar)).exit_code == 0
    shown = json.loads(run("arch", "show", str(cifar), "--json").stdout)
    assert (shown["flops"], shown["params"], shown["resolution"]) == (87_976_448, 2_236_682, 32)


def test_import_autoslim_round_trips_a_uniform_list(tmp_path):
    spec = tmp_path / "uniform.json"
    run("arch", "uniform", "--arch", "mobilenet_v1", "--out", str(spec))
    channels = list(json.loads(spec.read_text())["channels"].values()) + [1000]
    out = tmp_path / "imported.json"
    result = run(
        "arch", "import-autoslim", "--arch", "mobilenet_v1", "--channels", ",".join(map(str, channels)), "--out", str(out)
    )
    assert result.exit_code == 0, result.output
    assert json.loads(run("arch", "show", str(out), "--json").stdout)["flops"] == 568_740_352


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("arch", "uniform", "--arch", "vgg16", "--out", "x.json"), "unknown architecture 'vgg16'"),
        (("arch", "import-autoslim", "--arch", "mobilenet_v2", "--channels", "8,8,96", "--out", "x.json"), "have 36 numbers"),
        (("arch", "import-autoslim", "--arch", "mobilenet_v2", "--channels", "8,a", "--out", "x.json"), "comma-separated"),
        (("arch", "show", "missing.json"), "not found"),
    ],
)
def test_bad_arch_input_is_one_line_and_writes_nothing(tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    result = run(*args)
    assert result.exit_code == 2
    assert message in error_line(result)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("params", "key"),
    [
        ("modle:\n  arch: mobilenet_v2\n", "modle"),
        ("search:\n  flops: 2O0M\n", "search.flops"),
        ("supernet:\n  epochs: -3\n", "supernet.epochs"),
        ("supernet:\n  epochs: many\n", "supernet.epochs"),
        ("supernet:\n  min_width: 2.0\n  max_width: 1.5\n", "min_width"),
        ("model:\n  arch: vgg16\n", "model.arch"),
        ("data:\n  val_fraction: 1.5\n", "data.val_fraction"),
        ("search:\n  flops: null\n", "search"),
        ("search:\n  latency: 5 sec\n", "search.latency"),
        ("search:\n  memory: 4XB\n", "search.memory"),
        ("latency:\n  device: tpu\n", "latency.device"),
        ("latency:\n  threads: 0\n", "latency.threads"),
    ],
)
@pytest.mark.parametrize("command", ["scan", "data", "project", "latency", "supernet", "search", "extrapolate", "evaluate"])
def test_bad_params_fail_before_any_work(tmp_path, monkeypatch, params, key, command):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text(params)
    result = run(command)
    assert result.exit_code == 2
    line = error_line(result)
    assert key in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]


def test_stage_without_its_inputs_says_what_to_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text("search:\n  flops: 10M\n")
    result = run("extrapolate")
    assert result.exit_code == 2
    assert "dvc repro" in error_line(result)
    result = run("train", "--variant", "best", "--seed", "0")
    assert result.exit_code == 2
    assert "optimized, uniform" in error_line(result)
    result = run("train", "--variant", "uniform", "--seed", "7")
    assert result.exit_code == 2
    assert "not in train.seeds [0]" in error_line(result)
