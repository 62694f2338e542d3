"""End to end: every stage through DVC on a tiny slice of Fashion-MNIST."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.realdata import needs_fashion_mnist

REPO = Path(__file__).resolve().parents[1]
pytestmark = needs_fashion_mnist

TINY = {
    "data": {"fraction": 0.02},
    "model": {"arch": "mobilenet_v2", "width": 0.35, "cifar": True},
    "transfer": {"width": 0.5, "depth": 0.5, "resolution": 12, "data_fraction": 0.5},
    "supernet": {"epochs": 1, "batch_size": 64, "groups": 4, "eval_images": 128, "warmup_epochs": 0.0},
    "search": {"flops": "8M", "eval_images": 128, "batch_size": 128, "floor": 0.0},
    "train": {"epochs": 3, "batch_size": 32, "warmup_epochs": 0.0, "seeds": [0], "variants": ["optimized", "uniform", "random"]},
    "evaluate": {"latency_runs": 3},
}


def dvc(project: Path, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "dvc", *args],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


def set_params(project: Path, overrides: dict) -> None:
    params = yaml.safe_load((project / "params.yaml").read_text())
    for section, values in overrides.items():
        params[section].update(values)
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("project")
    shutil.copytree(REPO / "slimnet", root / "slimnet", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("dvc.yaml", "params.yaml"):
        shutil.copy(REPO / name, root / name)
    dvc(root, "init", "--no-scm", "-q")
    shutil.copy(REPO / ".dvcignore", root / ".dvcignore")
    set_params(root, TINY)
    dvc(root, "repro")
    return root


def load(project: Path, path: str) -> dict:
    return json.loads((project / path).read_text())


def changed_stages(status: str) -> list[str]:
    """The stages `dvc status` lists, less scan: it is always changed (`dvc repro` always rescans
    the source; `data` reruns only when the scan's output changes)."""
    stages = [line[:-1] for line in status.splitlines() if line.endswith(":") and not line[0].isspace()]
    return [stage for stage in stages if stage != "scan"]


def test_all_stages_write_their_outputs(project):
    for path in (
        "data/source.json",
        "data/full/train.pt",
        "data/meta.json",
        "data/search/train.pt",
        "data/search/meta.json",
        "stages/supernet/supernet.pt",
        "stages/supernet/curves.csv",
        "stages/search/trajectory.json",
        "stages/extrapolate/optimized.json",
        "stages/extrapolate/uniform.json",
        "stages/extrapolate/channels.csv",
        "stages/extrapolate/random.json",
        "stages/train/optimized/0/model.pt",
        "stages/train/uniform/0/model.pt",
        "stages/train/random/0/model.pt",
        "stages/evaluate/metrics.json",
        "stages/evaluate/seeds.csv",
        "stages/evaluate/accuracy_vs_flops.csv",
    ):
        assert (project / path).is_file(), path


def test_specs_match_the_target_flops_and_both_variants_are_evaluated(project):
    from slimnet.arch import load_spec

    for variant in ("optimized", "uniform", "random"):
        spec = load_spec(project / f"stages/extrapolate/{variant}.json")
        assert abs(spec.cost().flops / 8e6 - 1) <= 0.01, (variant, spec.cost())
        assert spec.resolution == 28 and spec.depth == (1, 2, 3, 4, 3, 3, 1)  # the full network
    metrics = load(project, "stages/evaluate/metrics.json")
    for variant in ("optimized", "uniform", "random"):
        assert 10.0 < metrics[variant]["top1"] <= 100.0  # trained: better than chance on 10 classes
        assert abs(metrics[variant]["flops"] / 8e6 - 1) <= 0.01
        assert metrics[variant]["params"] > 0 and "latency_ms" not in metrics[variant]  # measured: not a DVC output
    latency = load(project, "stages/evaluate/timings.json")
    assert latency["optimized"]["latency_ms"] > 0 and latency["uniform"]["latency_ms"] > 0
    assert metrics["gain_top1"] == pytest.approx(metrics["optimized"]["top1"] - metrics["uniform"]["top1"], abs=2e-3)
    # One seed: a gain but no interval, and never a win.
    assert metrics["seeds"] == 1 and metrics["gain_ci95_low"] is None and metrics["verdict"] == "within noise"
    assert metrics["vs_random"]["verdict"] == "within noise"
    cost = metrics["search_cost"]
    assert cost["supernet_train_flops"] > 0 and cost["search_flops"] > 0
    assert cost["direct_flops_est"] > cost["supernet_train_flops"] + cost["search_flops"] and cost["saving_x"] > 1


def test_search_trajectory_is_target_independent_and_complete(project):
    trajectory = load(project, "stages/search/trajectory.json")
    points = trajectory["points"]
    assert points[0]["slimmed"] is None and len(points) > 10
    assert all(a["flops"] > b["flops"] for a, b in zip(points, points[1:]))
    assert points[0]["ratio"]["flops"] > 1.0 > points[-1]["ratio"]["flops"]


def test_a_new_target_reruns_only_extrapolate_train_and_evaluate(project):
    assert changed_stages(dvc(project, "status")) == []
    set_params(project, {"search": {"flops": "6M"}})
    status = dvc(project, "status")  # lists the stages whose own deps changed
    assert changed_stages(status) == ["extrapolate"] and "search.flops" in status, status
    log = dvc(project, "repro")
    assert "Running stage 'scan'" in log, log
    for stage in ("data", "project", "supernet", "search"):
        assert f"Stage '{stage}' didn't change, skipping" in log, log
    for stage in ("extrapolate", "train@optimized-0", "train@uniform-0", "train@random-0", "evaluate"):
        assert f"Running stage '{stage}'" in log, log
    metrics = load(project, "stages/evaluate/metrics.json")
    assert abs(metrics["optimized"]["flops"] / 6e6 - 1) <= 0.01
    assert changed_stages(dvc(project, "status")) == []


def test_a_new_projection_changes_the_search_splits_only(project):
    set_params(project, {"transfer": {"resolution": 10, "data_fraction": 0.4}})
    status = dvc(project, "status")
    assert changed_stages(status) == ["project"], status  # not data: the full splits (and train) stay
    set_params(project, {"transfer": TINY["transfer"]})
    assert changed_stages(dvc(project, "status")) == []


def test_a_new_seed_trains_only_the_new_networks_and_gives_an_interval(project):
    before = (project / "stages/evaluate/seeds.csv").read_text()
    set_params(project, {"train": {"seeds": [0, 1]}})
    log = dvc(project, "repro")
    for variant in ("optimized", "uniform", "random"):
        assert f"Stage 'train@{variant}-0' didn't change, skipping" in log, log
        assert f"Running stage 'train@{variant}-1'" in log, log
    assert "Running stage 'evaluate'" in log and "Running stage 'extrapolate'" not in log, log
    metrics = load(project, "stages/evaluate/metrics.json")
    rows = (project / "stages/evaluate/seeds.csv").read_text().splitlines()
    assert len(rows) == 1 + 3 * 2 and all(line in rows for line in before.splitlines())
    top1 = {(r.split(",")[0], r.split(",")[1]): float(r.split(",")[2]) for r in rows[1:]}
    gains = [top1[("optimized", s)] - top1[("uniform", s)] for s in ("0", "1")]
    assert metrics["seeds"] == 2 and metrics["gain_top1"] == pytest.approx(sum(gains) / 2, abs=2e-3)
    # Two seeds: t with one degree of freedom, 12.71 x |g0 - g1| / 2.
    half = 12.7062 * abs(gains[0] - gains[1]) / 2
    assert metrics["gain_ci95_high"] - metrics["gain_ci95_low"] == pytest.approx(2 * half, abs=5e-3)
    assert metrics["verdict"] in ("better", "worse", "within noise")
    assert changed_stages(dvc(project, "status")) == []


def test_arch_show_checks_a_spec_against_the_supernet(project, monkeypatch):
    from typer.testing import CliRunner

    from slimnet.arch import ArchSpec, save_spec
    from slimnet.arch_cli import with_arch_tools
    from slimnet.cli import app as stage_app

    app = with_arch_tools(stage_app)

    monkeypatch.chdir(project)
    trajectory = load(project, "stages/search/trajectory.json")
    reference = ArchSpec.model_validate(trajectory["reference"])
    point = reference.with_channels(trajectory["points"][5]["channels"])
    save_spec(point, project / "point.json")
    runner = CliRunner()
    ok = runner.invoke(app, ["arch", "show", "point.json", "--supernet", "stages/supernet/supernet.pt", "--json"])
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout)["flops"] == trajectory["points"][5]["flops"]

    unit = next(iter(point.channels))
    save_spec(point.with_channels({**point.channels, unit: point.channels[unit] + 1}), project / "bad.json")
    bad = runner.invoke(app, ["arch", "show", "bad.json", "--supernet", "stages/supernet/supernet.pt"])
    assert bad.exit_code == 2
    assert f"unit {unit} has" in bad.stderr and "not one of its choices" in bad.stderr
    full = runner.invoke(app, ["arch", "show", "stages/extrapolate/optimized.json", "--supernet", "stages/supernet/supernet.pt"])
    assert full.exit_code == 2 and "depth" in full.stderr


def out_hashes(project: Path, stage: str) -> dict[str, str]:
    """md5 of every output of a stage, read from the files themselves (not from dvc.lock)."""
    import hashlib

    lock = yaml.safe_load((project / "dvc.lock").read_text())["stages"][stage]
    hashes = {}
    for out in lock["outs"]:
        path = project / out["path"]
        files = sorted(path.rglob("*")) if path.is_dir() else [path]
        for file in files:
            if file.is_file():
                hashes[file.relative_to(project).as_posix()] = hashlib.md5(file.read_bytes()).hexdigest()
    return hashes


@pytest.mark.parametrize("stage", ["scan", "data", "project", "supernet", "search", "extrapolate", "train@uniform-0", "evaluate"])
def test_forcing_a_stage_rewrites_the_same_bytes_and_leaves_nothing_stale(project, stage):
    assert changed_stages(dvc(project, "status")) == []
    before = out_hashes(project, stage)
    dvc(project, "repro", "-f", "-s", stage)
    assert out_hashes(project, stage) == before
    # Same bytes, so nothing downstream is stale (no 15-minute rerun for nothing).
    assert changed_stages(dvc(project, "status")) == []
