"""End to end on the tiny project (tests/pipeline_project.py): every stage's outputs, the metrics
DVC shows, the networks matched to the budget, and what a change of budget, projection or
process count reruns."""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import sys

import pytest
import torch
import yaml

from tests.pipeline_project import (
    BUDGET,
    BUDGET_FLOPS,
    NETWORKS,
    OTHER_BUDGET,
    OTHER_BUDGET_FLOPS,
    REPO,
    TINY,
    changed_stages,
    dvc,
    load,
    set_params,
    slimnet_in,
    stale_stages,
)
from tests.realdata import needs_fashion_mnist

pytestmark = [needs_fashion_mnist, pytest.mark.slow]


def test_all_stages_write_their_outputs(project):
    for path in (
        "data/source.json",
        "data/full/train.pt",
        "data/meta.json",
        "data/search/train.pt",
        "data/search/meta.json",
        "stages/latency/table.json",
        "stages/plan/supernet.json",
        "stages/supernet/supernet.pt",
        "stages/supernet/live/metrics.json",
        "stages/supernet/live/plots/metrics/max_acc.tsv",
        "stages/train/optimized/0/live/plots/metrics/val_acc.tsv",
        "stages/train/random/0/live/plots/metrics/random-1/val_acc.tsv",  # each draw under its name
        "stages/morphnet/live/plots/metrics/not_trained.tsv",
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


def test_dvc_metrics_are_evaluates_headline_then_the_trainings_last_epochs(project):
    """`dvc metrics show` (and so `dvc exp show`) has evaluate's headline figures first (the whole
    report's, rounded), then each training's live summary: its last epoch and headline figures
    (what a running experiment shows). The other stages' records are files to open."""
    from slimnet.pipeline.evaluate import headline

    result = subprocess.run(
        [sys.executable, "-m", "dvc", "metrics", "show", "--json"], cwd=project, capture_output=True, text=True
    )
    shown = json.loads(result.stdout)
    files = {path: entry["data"] for revision in shown.values() for path, entry in revision["data"].items()}
    assert list(files)[0] == "stages/evaluate/metrics.json", list(files)
    live = sorted(path for path in files if path != "stages/evaluate/metrics.json")
    assert all(path.endswith("/live/metrics.json") for path in live), live
    assert "stages/supernet/live/metrics.json" in live and "stages/train/uniform/0/live/metrics.json" in live
    # DVC leaves out keys whose value is null (the intervals of a one-seed run).
    expected = {key: value for key, value in headline(load(project, "stages/evaluate/report.json")).items() if value is not None}
    assert files["stages/evaluate/metrics.json"] == expected
    supernet = files["stages/supernet/live/metrics.json"]
    assert set(supernet) == {"epoch", "max_acc", "min_acc"} and supernet["epoch"] == TINY["supernet"]["epochs"]
    trained = files["stages/train/uniform/0/live/metrics.json"]
    assert trained["val_acc"] == load(project, "stages/train/uniform/0/metrics.json")["val_acc"]
    assert files["stages/morphnet/live/metrics.json"] == {}  # search.method autoslim: MorphNet did not train


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
    assert abs(flops["optimized"] / BUDGET_FLOPS - 1) <= 0.01, flops
    for name in NETWORKS[1:]:
        assert abs(flops[name] / flops["optimized"] - 1) <= 0.01, (name, flops)
    # One channel grid for every network, recorded.
    summary = load(project, "stages/extrapolate/summary.json")
    assert summary["divisor_fallback"] == (summary["divisor"] != 8)
    for name, spec in specs.items():
        assert spec.resolution == TINY["data"]["resolution"] and spec.depth == (1, 2, 3, 4, 3, 3, 1)  # the full network
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
    assert stale_stages(project) == []
    set_params(project, {"search": {"flops": OTHER_BUDGET}})
    try:
        status = dvc(project, "status")  # lists the stages whose own deps changed
        # dmcp searches for the budget and stability selects its point: both read it too (not
        # selected, they only rewrite the same {"enabled": false}, so the search does not rerun).
        assert changed_stages(status) == ["dmcp", "extrapolate", "stability"] and "search.flops" in status, status
        log = dvc(project, "repro", "extrapolate")
        for stage in upstream[1:]:
            assert f"Stage '{stage}' didn't change, skipping" in log, log
        assert "Running stage 'extrapolate'" in log, log
        assert abs(load(project, "stages/extrapolate/summary.json")["optimized"]["flops"] / OTHER_BUDGET_FLOPS - 1) <= 0.01
        stale = stale_stages(project)
        trainings = [f"train@{variant}-0" for variant in TINY["train"]["variants"]]
        assert set(trainings) <= set(stale) and not set(stale) & set(upstream), stale
        assert set(stale) <= {*trainings, "stability", "evaluate", "slimmable", "export"}, stale
    finally:
        set_params(project, {"search": {"flops": TINY["search"]["flops"]}})
        dvc(project, "repro", "extrapolate", "stability")
    assert stale_stages(project) == []  # the first budget's networks again, byte for byte


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
    # Inside what the search covered. (At the tiny project's 16x16 a layer's fixed cost dominates
    # its measured time: the covered range can sit just above the full network's own prediction.)
    assert min(latency_ratios) < max(latency_ratios)
    target_ms = full_ms * (min(latency_ratios) + max(latency_ratios)) / 2
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
    params["search"].update({"flops": BUDGET, "params": "1K"})
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    before = {p: p.read_bytes() for p in (project / "stages/extrapolate").iterdir()}
    result = slimnet_in(project, "extrapolate", "--params", str(tmp_path / "params.yaml"))
    assert result.exit_code == 2, result.output
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
        result = slimnet_in(project, "extrapolate", "--params", str(tmp_path / "params.yaml"))
    finally:
        shutil.rmtree(project / "presets")
    assert result.exit_code == 2, result.output
    line = result.stderr.strip()
    assert "\n" not in line and line.startswith("error: search.flops: 200M is above what the search covered"), line
    assert f"the configured network, mobilenet_v2 0.35x at {TINY['data']['resolution']} px, costs " in line, line
    assert "presets/imagenet-mobilenet_v2.yaml (mobilenet_v2 1x at 224 px: 301M)" in line, line


def test_a_new_projection_changes_the_search_splits_only(project):
    set_params(project, {"transfer": {"resolution": 10, "data_fraction": 0.4}})
    status = dvc(project, "status")
    assert changed_stages(status) == ["project"], status  # not data: the full splits (and train) stay
    set_params(project, {"transfer": TINY["transfer"]})
    assert stale_stages(project) == []


def test_changing_the_number_of_processes_reruns_nothing(project):
    # resources.* say how the stages run, not what they compute: no stage lists them.
    assert stale_stages(project) == []
    set_params(project, {"resources": {"nproc": 2, "sync_bn": True, "threads": "auto"}})
    assert stale_stages(project) == []
    set_params(project, {"resources": {"nproc": 1, "sync_bn": False, **TINY["resources"]}})
    assert stale_stages(project) == []


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
