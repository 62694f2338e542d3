"""End to end: every stage through DVC on a tiny slice of Fashion-MNIST."""

from __future__ import annotations

import csv
import json
import re
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from tests.realdata import needs_fashion_mnist

REPO = Path(__file__).resolve().parents[1]
pytestmark = [needs_fashion_mnist, pytest.mark.slow]

TINY = {
    "data": {"fraction": 0.02},
    "model": {"arch": "mobilenet_v2", "width": 0.35, "cifar": True},
    "transfer": {"width": 0.5, "depth": 0.5, "resolution": 12, "data_fraction": 0.5},
    "supernet": {"epochs": 1, "batch_size": 64, "groups": 4, "eval_images": 128, "warmup_epochs": 0.0},
    "morphnet": {"epochs": 1, "batch_size": 64, "warmup_epochs": 0.0},
    "dmcp": {"epochs": 1, "batch_size": 64, "warmup_epochs": 0.0},
    # 30 of the 60 held-out images: a second sample fits beside them (the stability diagnostic's).
    "search": {"flops": "8M", "eval_images": 30, "batch_size": 128, "floor": 0.0},
    "extrapolate": {"random_draws": [0, 1]},
    # lr is per 256 images: 0.8 is 0.1 at batch 32. At the default 0.1 (0.0125 here) two epochs
    # left every network near chance (14-24%) and a slimmable width at or below 10% on one CPU.
    # One epoch at 0.8 gives 40-55% (measured 2026-12-06): clear of chance, half the time.
    "train": {
        "epochs": 1,
        "batch_size": 32,
        "lr": 0.8,
        "warmup_epochs": 0.0,
        "seeds": [0],
        "variants": ["optimized", "uniform", "random"],
    },
    "latency": {"repeats": 2},
    "evaluate": {"latency_runs": 3},
}


def dvc(project: Path, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "dvc", *args],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=1800,  # a guard against a hang: a repro here takes 1-3 minutes, more on a loaded machine
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
        "stages/latency/table.json",
        "stages/supernet/supernet.pt",
        "stages/supernet/curves.csv",
        "stages/morphnet/network.pt",  # a record that MorphNet did not run (search.method: autoslim)
        "stages/search/trajectory.json",
        "stages/extrapolate/optimized.json",
        "stages/extrapolate/uniform.json",
        "stages/extrapolate/channels.csv",
        "stages/extrapolate/random.json",
        "stages/train/optimized/0/model.pt",
        "stages/train/uniform/0/model.pt",
        "stages/train/random/0/model.pt",
        "stages/evaluate/metrics.json",
        "stages/evaluate/report.json",
        "stages/evaluate/seeds.csv",
        "stages/evaluate/accuracy_vs_flops.csv",
        "stages/report/accuracy_vs_flops.png",
        "stages/export/optimized.onnx",
        "stages/export/uniform.torchscript.pt",
        "stages/export/metrics.json",
        "stages/alone/metrics.json",
        "stages/stability/metrics.json",
    ):
        assert (project / path).is_file(), path


NETWORKS = ("optimized", "uniform", "random-0", "random-1")  # TINY's random_draws


def test_dvc_shows_evaluates_headline_as_the_one_metrics_file(project):
    """`dvc metrics show` (and so `dvc exp show`) has one file: the headline figures, which are
    the whole report's, rounded; the other stages' records are files to open, not metrics."""
    from slimnet.pipeline.evaluate import headline

    result = subprocess.run(
        [sys.executable, "-m", "dvc", "metrics", "show", "--json"], cwd=project, capture_output=True, text=True
    )
    shown = json.loads(result.stdout)
    files = {path: entry["data"] for revision in shown.values() for path, entry in revision["data"].items()}
    assert list(files) == ["stages/evaluate/metrics.json"], list(files)
    # DVC leaves out keys whose value is null (the intervals of a one-seed run).
    expected = {key: value for key, value in headline(load(project, "stages/evaluate/report.json")).items() if value is not None}
    assert files["stages/evaluate/metrics.json"] == expected


def test_specs_match_the_target_flops_and_every_network_is_evaluated(project):
    from slimnet.space.spec import ArchSpec, load_spec

    # The searched network is matched to the budget; the baselines to the searched network's cost
    # (each within extrapolate.tolerance of what it is matched to), so all of them cost the same.
    specs = {v: load_spec(project / f"stages/extrapolate/{v}.json") for v in ("optimized", "uniform")}
    draws = load(project, "stages/extrapolate/random.json")
    assert sorted(draws) == ["random-0", "random-1"]
    specs.update({name: ArchSpec.model_validate(spec) for name, spec in draws.items()})
    assert specs["random-0"].channels != specs["random-1"].channels
    flops = {v: spec.cost().flops for v, spec in specs.items()}
    assert abs(flops["optimized"] / 8e6 - 1) <= 0.01, flops
    for name in NETWORKS[1:]:
        assert abs(flops[name] / flops["optimized"] - 1) <= 0.01, (name, flops)
    # One channel grid for every network, recorded.
    summary = load(project, "stages/extrapolate/summary.json")
    assert summary["divisor_fallback"] == (summary["divisor"] != 8)
    for name, spec in specs.items():
        assert spec.resolution == 28 and spec.depth == (1, 2, 3, 4, 3, 3, 1)  # the full network
        assert all(c % summary["divisor"] == 0 for c in spec.channels.values()), name
        assert f"channels in multiples of {summary['divisor']}" in spec.note, spec.note
        assert summary[name]["flops"] == flops[name]
    metrics = load(project, "stages/evaluate/report.json")
    for name in NETWORKS:
        assert 10.0 < metrics[name]["top1"] <= 100.0  # trained: better than chance on 10 classes
        assert metrics[name]["flops"] == flops[name]
        assert metrics[name]["params"] > 0 and "latency_ms" not in metrics[name]  # measured: not a DVC output
    latency = load(project, "stages/evaluate/timings.json")
    for name in NETWORKS:
        assert latency[name]["latency_ms"] > 0 and latency[name]["spread"] >= 0
        # Predicted from the measured table: tracked, and of the order of what was measured.
        assert latency[name]["predicted_ms"] == metrics[name]["latency_pred_ms"] > 0
        assert 0.3 < metrics[name]["latency_pred_ms"] / latency[name]["latency_ms"] < 3
    # What says whether the table still fits this machine (a processor's name does not).
    ratios = [latency[v]["latency_ms"] / latency[v]["predicted_ms"] for v in NETWORKS]
    assert latency["device"]["measured_over_predicted"] == round(statistics.median(ratios), 3)
    assert metrics["gain_top1"] == pytest.approx(metrics["optimized"]["top1"] - metrics["uniform"]["top1"], abs=2e-3)
    # One seed: a gain but no interval, and never a win.
    assert metrics["seeds"] == 1 and metrics["gain_ci95_low"] is None and metrics["verdict"] == "within noise"
    # Against random: the draws' mean, and the searched network's place among the draws.
    draw_top1 = [metrics[name]["top1"] for name in NETWORKS[2:]]
    assert metrics["random"]["draws"] == 2 and metrics["random"]["top1"] == pytest.approx(sum(draw_top1) / 2, abs=2e-3)
    vs = metrics["vs_random"]
    assert vs["gain_top1"] == pytest.approx(metrics["optimized"]["top1"] - sum(draw_top1) / 2, abs=2e-3)
    assert vs["verdict"] == "within noise" and vs["gain_ci95_low"] is None and vs["draws"] == 2
    assert vs["rank_among_draws"] == 1 + sum(t >= metrics["optimized"]["top1"] for t in draw_top1)
    # The supernet's estimate of each network: the optimized one is the selected trajectory point,
    # scored as the search scored it; tau compares the estimates' order with the trained top-1's.
    projected = load(project, "stages/extrapolate/projected.json")
    point = next(p for p in load(project, "stages/search/trajectory.json")["points"] if p["step"] == summary["selected_step"])
    assert projected["optimized"]["channels"] == point["channels"]
    assert projected["optimized"]["flops"] == point["flops"]
    assert projected["optimized"]["supernet_top1"] == pytest.approx(point["accuracy"], abs=1e-3)
    for name in NETWORKS[2:]:  # each draw scaled to the searched point's projected FLOPs
        assert abs(projected[name]["flops"] / point["flops"] - 1) <= abs(projected[name]["drawn_flops"] / point["flops"] - 1)
    estimates = [projected[v]["supernet_top1"] for v in NETWORKS]
    assert [metrics[v]["supernet_top1"] for v in NETWORKS] == estimates
    trained = [metrics[v]["top1"] for v in NETWORKS]
    from slimnet.stats.ranking import kendall_tau

    tau = kendall_tau(estimates, trained)
    assert metrics["ranking"] == {"kendall_tau": None if tau is None else round(tau, 4), "networks": 4}
    cost = metrics["search_cost"]
    assert cost["supernet_train_flops"] > 0 and cost["search_flops"] > 0
    assert cost["direct_flops_est"] > cost["supernet_train_flops"] + cost["search_flops"] and cost["saving_x"] > 1


def test_exported_networks_are_the_trained_ones(project):
    """The stage's ONNX gives the trained network's outputs on real test images."""
    from slimnet.datasets.load import load_split
    from slimnet.deploy.exporters import run_onnx
    from slimnet.space.spec import load_spec
    from slimnet.training.trained import load_trained

    metrics = load(project, "stages/export/metrics.json")
    assert metrics["check"]["passed"] is True
    for variant in ("optimized", "uniform"):
        data = (project / f"stages/export/{variant}.onnx").read_bytes()
        assert metrics[variant]["onnx_bytes"] == len(data)
        assert metrics[variant]["torchscript_bytes"] == (project / f"stages/export/{variant}.torchscript.pt").stat().st_size
        spec = load_spec(project / f"stages/extrapolate/{variant}.json")
        model = load_trained(spec, project / f"stages/train/{variant}/0/model.pt")
        x, _ = next(load_split(project / "data/full/test.pt").batches(64, shuffle=False, augment=False))
        x = x.contiguous()
        with torch.no_grad():
            expected = model(x)
        assert torch.allclose(run_onnx(data, x), expected, atol=1e-4, rtol=1e-3)
    errors = load(project, "stages/export/timings.json")["errors"]  # measured: beside the outputs
    assert 0 <= errors["optimized"]["onnx_max_abs_error"] < 1e-3


def test_search_trajectory_is_target_independent_and_complete(project):
    trajectory = load(project, "stages/search/trajectory.json")
    points = trajectory["points"]
    assert points[0]["slimmed"] is None and len(points) > 10
    assert all(a["flops"] > b["flops"] for a, b in zip(points, points[1:]))
    assert points[0]["ratio"]["flops"] > 1.0 > points[-1]["ratio"]["flops"]


def test_a_new_target_reruns_only_extrapolate_and_what_it_feeds(project):
    """The search is target-independent: a new budget reruns extrapolate, whose new networks then
    make every training and what follows stale, and nothing upstream. (Checked with dvc status
    instead of training them: the trainings' reruns are the new-seed test's.)"""
    upstream = ("scan", "data", "project", "latency", "supernet", "search")
    assert changed_stages(dvc(project, "status")) == []
    set_params(project, {"search": {"flops": "6M"}})
    try:
        status = dvc(project, "status")  # lists the stages whose own deps changed
        # dmcp searches for the budget and stability selects its point: both read it too (not
        # selected, they only rewrite the same {"enabled": false}, so the search does not rerun).
        assert changed_stages(status) == ["dmcp", "extrapolate", "stability"] and "search.flops" in status, status
        log = dvc(project, "repro", "extrapolate")
        for stage in upstream[1:]:
            assert f"Stage '{stage}' didn't change, skipping" in log, log
        assert "Running stage 'extrapolate'" in log, log
        assert abs(load(project, "stages/extrapolate/summary.json")["optimized"]["flops"] / 6e6 - 1) <= 0.01
        stale = changed_stages(dvc(project, "status"))
        trainings = [f"train@{variant}-0" for variant in TINY["train"]["variants"]]
        assert set(trainings) <= set(stale) and not set(stale) & set(upstream), stale
        assert set(stale) <= {*trainings, "stability", "evaluate", "slimmable", "export"}, stale
    finally:
        set_params(project, {"search": {"flops": TINY["search"]["flops"]}})
        dvc(project, "repro", "extrapolate", "stability")
    assert changed_stages(dvc(project, "status")) == []  # the 8M networks again, byte for byte


def test_morphnet_and_dmcp_run_the_pipeline_and_switching_back_restores_autoslims_outputs(project):
    """search.method: morphnet trains MorphNet's network instead of the supernet and searches it by
    thresholds, and a budget change after it reruns extrapolate onward only. dmcp trains the
    supernet on with the Markov chains towards the budget, extrapolate carries its decided point,
    and a budget change reruns dmcp (its search reads the budget); a latency budget binds through the
    latency table, one out of reach stops it in one line. Switching back restores every AutoSlim output from DVC's run-cache, byte for byte,
    without training. (One test: each switch back is a whole repro.)"""
    stages = ("supernet", "search", "extrapolate", "train@optimized-0", "evaluate")
    before = {stage: out_hashes(project, stage) for stage in stages}
    assert load(project, "stages/morphnet/metrics.json") == {"enabled": False}
    assert load(project, "stages/dmcp/metrics.json") == {"enabled": False}
    set_params(project, {"search": {"method": "morphnet"}})
    try:
        # The optimizers' stages, the search and what reads search.method; not the data or the latency table.
        assert set(changed_stages(dvc(project, "status"))) == {
            "supernet",
            "morphnet",
            "dmcp",
            "search",
            "extrapolate",
            "stability",
        }
        log = dvc(project, "repro")
        assert "Running stage 'morphnet'" in log and "Running stage 'project'" not in log, log
        morphnet = load(project, "stages/morphnet/metrics.json")
        assert morphnet["enabled"] and morphnet["train_flops"] > 0
        assert load(project, "stages/supernet/metrics.json") == {"enabled": False}
        trajectory = load(project, "stages/search/trajectory.json")
        assert trajectory["method"] == "morphnet" and len(trajectory["points"]) > 10
        assert all(a["flops"] > b["flops"] for a, b in zip(trajectory["points"], trajectory["points"][1:]))
        summary = load(project, "stages/extrapolate/summary.json")
        assert abs(summary["optimized"]["flops"] / 8e6 - 1) <= 0.01
        assert load(project, "stages/extrapolate/optimized.json")["note"].startswith("MorphNet step")
        report = load(project, "stages/evaluate/report.json")
        assert report["search_cost"]["supernet_train_flops"] == morphnet["train_flops"]  # the optimizer's training
        assert 10.0 < report["optimized"]["top1"] <= 100.0
        set_params(project, {"search": {"flops": "6M"}})
        # The search is target-independent (dmcp and stability only rewrite their records).
        assert changed_stages(dvc(project, "status")) == ["dmcp", "extrapolate", "stability"]

        set_params(project, {"search": {"method": "dmcp", "flops": TINY["search"]["flops"]}})
        log = dvc(project, "repro")
        assert "Running stage 'dmcp'" in log, log
        # search.method is a param of the supernet stage (MorphNet skips it): DMCP trains it again, to the same bytes.
        assert out_hashes(project, "supernet") == before["supernet"]
        dmcp = load(project, "stages/dmcp/metrics.json")
        assert dmcp["enabled"] and dmcp["searched_for"] == {"flops": "8M"}
        assert dmcp["train_flops"] == dmcp["supernet_train_flops"] + dmcp["dmcp_train_flops"]
        trajectory = load(project, "stages/search/trajectory.json")
        assert trajectory["method"] == "dmcp" and len(trajectory["points"]) == 2
        assert (
            trajectory["points"][1]["channels"] == torch.load(project / "stages/dmcp/network.pt", weights_only=False)["channels"]
        )
        summary = load(project, "stages/extrapolate/summary.json")
        assert abs(summary["optimized"]["flops"] / 8e6 - 1) <= 0.01 and summary["selected_step"] == 1
        assert load(project, "stages/extrapolate/optimized.json")["note"].startswith("DMCP step 1")
        report = load(project, "stages/evaluate/report.json")
        assert report["search_cost"]["supernet_train_flops"] == dmcp["train_flops"]
        set_params(project, {"search": {"flops": "6M"}})
        assert changed_stages(dvc(project, "status")) == ["dmcp", "extrapolate", "stability"]
        # A latency budget out of reach stops in one line naming the range; one within it binds
        # through the latency table (the full network's predicted ms of the carried widths).
        set_params(project, {"search": {"flops": None, "latency": "5000ms"}})
        failed = subprocess.run([sys.executable, "-m", "slimnet", "dmcp"], cwd=project, capture_output=True, text=True)
        assert failed.returncode != 0 and failed.stderr.count("\n") == 1 and "search.latency" in failed.stderr, failed.stderr
        assert load(project, "stages/dmcp/metrics.json") == dmcp  # nothing written
        low, high = (float(ms) for ms in re.findall(r"choose between ([0-9.]+)ms and ([0-9.]+)ms", failed.stderr)[0])
        target = round((low + high) / 2, 3)
        set_params(project, {"search": {"flops": None, "latency": f"{target}ms"}})
        ran = subprocess.run([sys.executable, "-m", "slimnet", "dmcp"], cwd=project, capture_output=True, text=True)
        assert ran.returncode == 0, ran.stderr
        dmcp = load(project, "stages/dmcp/metrics.json")
        # One epoch of the tiny problem: the wiring (a target in ms, the chains' ms within the space's
        # range); that DMCP pulls the predicted ms to the target is tests/test_dmcp.py's.
        assert dmcp["targets"] == {"latency": pytest.approx(target)} and low <= dmcp["expected"]["latency"] <= high
        assert dmcp["reached"]["latency"] == pytest.approx(dmcp["expected"]["latency"] / target, abs=1e-3)
    finally:
        set_params(project, {"search": {"method": "autoslim", "flops": TINY["search"]["flops"], "latency": None}})
        log = dvc(project, "repro")
    assert "Running stage 'supernet'" not in log and "Running stage 'train@optimized-0'" not in log, log
    assert {stage: out_hashes(project, stage) for stage in stages} == before
    assert changed_stages(dvc(project, "status")) == []


def test_several_budgets_on_the_real_trajectory_and_latency_table(project):
    from slimnet.deploy.latency_model import LatencyTable, predict_spec_ms
    from slimnet.optimizers.budgets import Budget, Costs, extrapolate_within, point_ratios
    from slimnet.optimizers.trajectory import Trajectory
    from slimnet.space.spec import load_spec

    trajectory = Trajectory.load(project / "stages/search/trajectory.json")
    table = LatencyTable.load(project / "stages/latency/table.json")
    full = load_spec(project / "stages/extrapolate/reference.json")
    costs = Costs(table)
    full_ms, full_cost = predict_spec_ms(table, full), full.cost()
    latency_ratios = point_ratios(
        trajectory.points, "latency", projected=trajectory.reference, full=full, costs=costs, stacking="average", divisor=8
    )
    assert min(latency_ratios) < 1 < max(latency_ratios)  # the search spans the full network's predicted latency
    target_ms = full_ms * (min(latency_ratios) + 1) / 2  # inside what the search covered, below the full network
    budgets = [Budget("flops", 0.9 * full_cost.flops), Budget("params", 0.6 * full_cost.params), Budget("latency", target_ms)]
    result = extrapolate_within(
        trajectory.points,
        budgets,
        projected_uniform=trajectory.reference,
        full_uniform=full,
        costs=costs,
        stacking="average",
        divisor=8,
        tolerance=0.01,
    )
    optimized = result["optimized"]
    for budget in budgets:
        assert costs.of_spec(budget.metric, optimized) <= budget.target * 1.01, (budget, result["binding"])
    binding = next(b for b in budgets if b.metric == result["binding"])
    assert abs(costs.of_spec(binding.metric, result["uniform"]) / costs.of_spec(binding.metric, optimized) - 1) <= 0.01


def test_impossible_budgets_fail_at_extrapolate_naming_the_binding_one_and_writing_nothing(project, tmp_path):
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["search"].update({"flops": "8M", "params": "1K"})
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    before = {p: p.read_bytes() for p in (project / "stages/extrapolate").iterdir()}
    result = subprocess.run(
        [sys.executable, "-m", "slimnet", "extrapolate", "--params", str(tmp_path / "params.yaml")],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    line = result.stderr.strip()
    assert "\n" not in line and line.startswith("error: search.params: 1K is below what the search covered")
    assert "choose between" in line
    assert {p: p.read_bytes() for p in (project / "stages/extrapolate").iterdir()} == before


def test_a_budget_for_a_larger_network_says_what_this_one_costs_and_names_a_preset(project, tmp_path):
    """The card's `-S search.flops=200M` on a small network: the stop says why and which preset fits."""
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["search"].update({"flops": "200M"})
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    shutil.copytree(REPO / "presets", project / "presets")
    try:
        result = subprocess.run(
            [sys.executable, "-m", "slimnet", "extrapolate", "--params", str(tmp_path / "params.yaml")],
            cwd=project,
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        shutil.rmtree(project / "presets")
    assert result.returncode == 2, result.stdout + result.stderr
    line = result.stderr.strip()
    assert "\n" not in line and line.startswith("error: search.flops: 200M is above what the search covered"), line
    assert "the configured network, mobilenet_v2 0.35x at 28 px, costs " in line, line
    assert "presets/imagenet-mobilenet_v2.yaml (mobilenet_v2 1x at 224 px: 301M)" in line, line


def test_a_new_projection_changes_the_search_splits_only(project):
    set_params(project, {"transfer": {"resolution": 10, "data_fraction": 0.4}})
    status = dvc(project, "status")
    assert changed_stages(status) == ["project"], status  # not data: the full splits (and train) stay
    set_params(project, {"transfer": TINY["transfer"]})
    assert changed_stages(dvc(project, "status")) == []


def test_changing_the_number_of_processes_reruns_nothing(project):
    # resources.* say how the stages run, not what they compute: no stage lists them.
    assert changed_stages(dvc(project, "status")) == []
    set_params(project, {"resources": {"nproc": 2, "sync_bn": True, "threads": 1}})
    assert changed_stages(dvc(project, "status")) == []
    set_params(project, {"resources": {"nproc": 1, "sync_bn": False, "threads": "auto"}})
    assert changed_stages(dvc(project, "status")) == []


def test_a_new_seed_trains_only_the_new_networks_and_gives_an_interval(project):
    before = (project / "stages/evaluate/seeds.csv").read_text()
    set_params(project, {"train": {"seeds": [0, 1]}})
    log = dvc(project, "repro")
    for variant in ("optimized", "uniform", "random"):
        assert f"Stage 'train@{variant}-0' didn't change, skipping" in log, log
        assert f"Running stage 'train@{variant}-1'" in log, log
    assert "Running stage 'evaluate'" in log and "Running stage 'extrapolate'" not in log, log
    metrics = load(project, "stages/evaluate/report.json")
    rows = (project / "stages/evaluate/seeds.csv").read_text().splitlines()
    assert len(rows) == 1 + 4 * 2 and all(line in rows for line in before.splitlines())  # (variant, draw, seed)
    top1 = {(r["variant"], r["draw"], r["seed"]): float(r["top1"]) for r in csv.DictReader(rows)}
    gains = [top1[("optimized", "", s)] - top1[("uniform", "", s)] for s in ("0", "1")]
    assert metrics["seeds"] == 2 and metrics["gain_top1"] == pytest.approx(sum(gains) / 2, abs=2e-3)
    # Two seeds: t with one degree of freedom, 12.71 x |g0 - g1| / 2.
    half = 12.7062 * abs(gains[0] - gains[1]) / 2
    assert metrics["gain_ci95_high"] - metrics["gain_ci95_low"] == pytest.approx(2 * half, abs=5e-3)
    assert metrics["verdict"] in ("better", "worse", "within noise")
    # Against the draws' mean seed by seed, with an interval now.
    means = [(top1[("random", "0", s)] + top1[("random", "1", s)]) / 2 for s in ("0", "1")]
    against = [top1[("optimized", "", s)] - means[i] for i, s in enumerate(("0", "1"))]
    assert metrics["vs_random"]["gain_top1"] == pytest.approx(sum(against) / 2, abs=2e-3)
    assert metrics["vs_random"]["gain_ci95_low"] is not None
    assert changed_stages(dvc(project, "status")) == []


def test_arch_show_checks_a_spec_against_the_supernet(project, monkeypatch):
    from typer.testing import CliRunner

    from slimnet.cli import app as stage_app
    from slimnet.pipeline.arch_tools import with_arch_tools
    from slimnet.space.spec import ArchSpec, save_spec

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


FORCED = ["scan", "data", "project", "supernet", "search", "extrapolate", "train@uniform-0", "evaluate", "export"]


def test_forcing_the_stages_rewrites_the_same_bytes_and_leaves_nothing_stale(project):
    assert changed_stages(dvc(project, "status")) == []
    before = {stage: out_hashes(project, stage) for stage in FORCED}
    # One dvc run for all of them (a run each costs its start-up, ~4 s); each stage reruns alone (-s).
    log = dvc(project, "repro", "-f", "-s", *FORCED)
    assert all(f"Running stage '{stage}'" in log for stage in FORCED), log
    # Compared stage by stage, so a failure names the stage and the file whose bytes moved.
    for stage in FORCED:
        assert out_hashes(project, stage) == before[stage], stage
    # Same bytes, so nothing downstream is stale (no 15-minute rerun for nothing).
    assert changed_stages(dvc(project, "status")) == []


def test_slimmable_network_for_two_budgets_is_trained_scored_and_exported(project):
    """Off by default (an empty record); with two targets, one of them search.flops, it trains
    one network, compares that width with the optimized network, and exports a file per width."""
    from slimnet.datasets.load import load_split
    from slimnet.deploy.exporters import run_onnx
    from slimnet.training.trained import load_slimmable

    assert load(project, "stages/slimmable/metrics.json")["targets"] == []
    assert load(project, "stages/export/slimmable/widths.json") == {}
    flops = yaml.safe_load((project / "params.yaml").read_text())["search"]["flops"]
    # 2 epochs on ~1,000 images: both widths learn well clear of chance (10%; 51-55% measured)
    set_params(project, {"slimmable": {"targets": [flops, "4M"], "epochs": 2}})
    log = dvc(project, "repro")
    assert "Running stage 'slimmable'" in log and "Running stage 'export'" in log
    assert "Stage 'train@optimized-0' didn't change, skipping" in log
    rows = load(project, "stages/slimmable/metrics.json")["targets"]
    assert [r["target_flops"] for r in rows] == [int(float(flops[:-1]) * 1e6), 4_000_000]
    assert rows[0]["flops"] > rows[1]["flops"] and abs(rows[1]["flops"] / 4e6 - 1) <= 0.01
    # Compared with the optimized network of the first seed (earlier tests may have added seeds).
    seeds = csv.DictReader((project / "stages/evaluate/seeds.csv").read_text().splitlines())
    first = next(float(row["top1"]) for row in seeds if row["variant"] == "optimized" and row["seed"] == "0")
    assert rows[0]["individual"] == "optimized" and rows[0]["individual_top1"] == pytest.approx(first, abs=1e-3)
    assert rows[0]["gap_top1"] == pytest.approx(rows[0]["top1"] - first, abs=2e-3)
    assert rows[1]["individual"] is None  # no individually trained network at 4M in this run
    assert all(25.0 < r["top1"] <= 100.0 for r in rows), rows
    network, targets = load_slimmable(project / "stages/slimmable/model.pt")
    widths = load(project, "stages/export/slimmable/widths.json")
    assert sorted(widths) == sorted(f"slimmable/{n}" for n in ("4M", flops))
    x, _ = next(load_split(project / "data/full/test.pt").batches(32, shuffle=False, augment=False))
    x = x.contiguous()
    for index, name in enumerate((flops, "4M")):
        network.switch(index)
        with torch.no_grad():
            expected = network(x)
        data = (project / f"stages/export/slimmable/{name}.onnx").read_bytes()
        assert torch.allclose(run_onnx(data, x), expected, atol=1e-4, rtol=1e-3)
    assert changed_stages(dvc(project, "status")) == []


def test_the_stability_diagnostic_searches_again_on_another_sample_and_supernet_seed(project, tmp_path):
    assert load(project, "stages/stability/metrics.json") == {"enabled": False}  # off by default: nothing trained
    held_out = load(project, "data/search/meta.json")["counts"]["search/val"]
    assert held_out >= 2 * TINY["search"]["eval_images"]  # TINY leaves room for a second sample
    # A second sample of search.eval_images must exist beside the first: a clear error, nothing written.
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["diagnostics"]["stability"] = True
    params["search"]["eval_images"] = held_out  # the whole held-out split: no second sample left
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    failed = subprocess.run(
        [sys.executable, "-m", "slimnet", "stability", "--params", str(tmp_path / "params.yaml")],
        cwd=project,
        capture_output=True,
        text=True,
    )
    assert failed.returncode != 0 and "lower search.eval_images" in failed.stderr, failed.stderr
    assert len(failed.stderr.strip().splitlines()) == 1
    assert load(project, "stages/stability/metrics.json") == {"enabled": False}
    set_params(project, {"diagnostics": {"stability": True}})
    try:
        assert changed_stages(dvc(project, "status")) == ["stability"]  # it feeds no other stage
        dvc(project, "repro", "stability")
        record = load(project, "stages/stability/metrics.json")
        summary = load(project, "stages/extrapolate/summary.json")
        assert record["enabled"] and record["selected_step"] == summary["selected_step"]
        assert record["supernet_seed"] == 1 and record["held_out_images"] == TINY["search"]["eval_images"]
        assert set(record["similarity"]) == {"held_out_sample", "supernet_seed", "random_draws_mean"}
        assert all(0.0 < value <= 1.0 for value in record["similarity"].values())
        assert set(record["steps"]) == {"held_out_sample", "supernet_seed"}
        assert not (project / ".checkpoints/stability").exists()  # cleared once the record exists
    finally:
        set_params(project, {"diagnostics": {"stability": False}})
        dvc(project, "repro", "stability")
    assert changed_stages(dvc(project, "status")) == []


def test_the_alone_diagnostic_trains_max_and_min_beside_the_supernet(project):
    assert load(project, "stages/alone/metrics.json") == {"enabled": False}  # off by default: nothing trained
    set_params(project, {"diagnostics": {"alone": True}})
    try:
        assert changed_stages(dvc(project, "status")) == ["alone"]  # it feeds no other stage
        dvc(project, "repro", "alone")
        record = load(project, "stages/alone/metrics.json")
        supernet = load(project, "stages/supernet/metrics.json")
        assert record["enabled"] and record["epochs"] == TINY["supernet"]["epochs"]
        for name in ("max", "min"):
            row = record[name]
            assert row["supernet_top1"] == supernet[f"{name}_acc"]
            assert 0.0 <= row["alone_top1"] <= 100.0
            assert row["gap"] == round(row["supernet_top1"] - row["alone_top1"], 3)
        assert record["max"]["flops"] == supernet["max_flops"] and record["min"]["flops"] == supernet["min_flops"]
        assert not list((project / ".checkpoints/alone").rglob("*.pt"))  # cleared once the record exists
    finally:
        set_params(project, {"diagnostics": {"alone": False}})
        dvc(project, "repro", "alone")
