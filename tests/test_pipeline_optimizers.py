"""MorphNet and DMCP through the tiny project's pipeline (tests/pipeline_project.py): each runs
it in turn, and switching back to AutoSlim gives AutoSlim's outputs back byte for byte: the trained
networks from DVC's run-cache, the stages whose outputs git holds by running again."""

from __future__ import annotations

import re

import pytest
import torch

from tests.pipeline_project import (
    BUDGET,
    BUDGET_FLOPS,
    OTHER_BUDGET,
    SWITCHED_STAGES,
    TINY,
    dvc,
    load,
    out_hashes,
    set_params,
    slimnet_in,
    stale_stages,
)
from tests.realdata import needs_fashion_mnist

pytestmark = [needs_fashion_mnist, pytest.mark.slow]

# Each optimizer's run goes as far as the trained, scored and exported networks. Left out: the
# report's figure, and the diagnostics alone and stability, which TINY turns off (a record each).
# Their deps are as they were once the test switches back, so that repro finds nothing stale.
THROUGH = ("evaluate", "export")
LEFT_OUT = ["alone", "stability", "report"]  # in dvc status's order


def test_morphnet_then_dmcp_run_the_pipeline_and_switching_back_restores_autoslims_outputs(project):
    """One switch back serves both optimizers (a repro round and a project copy fewer than a test each)."""
    before = {stage: out_hashes(project, stage) for stage in SWITCHED_STAGES}
    assert load(project, "stages/morphnet/metrics.json") == {"enabled": False}
    assert load(project, "stages/dmcp/metrics.json") == {"enabled": False}
    try:
        # AutoSlim's trained supernet serves DMCP as it is: the plan it reads is the same bytes.
        set_params(project, {"search": {"method": "dmcp"}})
        dvc(project, "repro", "plan")
        assert "supernet" not in stale_stages(project)
        run_morphnet(project)
        run_dmcp(project, before)
    finally:
        set_params(project, {"search": {"method": "autoslim", "flops": TINY["search"]["flops"], "latency": None}})
        set_params(project, {"train": {"variants": TINY["train"]["variants"]}})
        log = dvc(project, "repro")
    # Switching back gives every AutoSlim output back, byte for byte, without training: the networks
    # come from DVC's run-cache. DVC keeps none for a stage with an uncached output that is not a
    # metric or a plot, so the stages whose outputs git holds run again.
    assert "Running stage 'supernet'" not in log and "Running stage 'train@optimized-0'" not in log, log
    assert all(f"Running stage '{stage}'" in log for stage in ("search", "extrapolate", "evaluate")), log
    assert {stage: out_hashes(project, stage) for stage in SWITCHED_STAGES} == before
    assert stale_stages(project) == []


def run_morphnet(project) -> None:
    """search.method: morphnet trains MorphNet's network instead of the supernet and searches it by
    thresholds, and a budget change after it reruns extrapolate onward only."""
    set_params(project, {"search": {"method": "morphnet"}})
    # What reads search.method: the plan (the supernet follows it), the optimizers' stages, the
    # search and what reads the search; not the data or the latency table.
    assert set(stale_stages(project)) == {
        "plan",
        "morphnet",
        "dmcp",
        "search",
        "extrapolate",
        "stability",
    }
    set_params(project, {"train": {"variants": ["optimized", "uniform"]}})  # the draws' trainings are not this test's
    log = dvc(project, "repro", *THROUGH)
    assert "Running stage 'morphnet'" in log and "Running stage 'supernet'" in log, log  # its record
    assert "Running stage 'project'" not in log, log
    morphnet = load(project, "stages/morphnet/metrics.json")
    assert morphnet["enabled"] and morphnet["train_flops"] > 0
    assert load(project, "stages/supernet/metrics.json") == {"enabled": False}
    trajectory = load(project, "stages/search/trajectory.json")
    assert trajectory["method"] == "morphnet" and len(trajectory["points"]) > 10
    assert all(a["flops"] > b["flops"] for a, b in zip(trajectory["points"], trajectory["points"][1:]))
    summary = load(project, "stages/extrapolate/summary.json")
    assert abs(summary["optimized"]["flops"] / BUDGET_FLOPS - 1) <= 0.01
    assert load(project, "stages/extrapolate/optimized.json")["note"].startswith("MorphNet step")
    report = load(project, "stages/evaluate/report.json")
    assert report["search_cost"]["supernet_train_flops"] == morphnet["train_flops"]  # the optimizer's training
    assert 10.0 < report["optimized"]["top1"] <= 100.0
    assert stale_stages(project) == LEFT_OUT
    set_params(project, {"search": {"flops": OTHER_BUDGET}})
    # The search is target-independent (dmcp only rewrites its record).
    assert set(stale_stages(project)) - set(LEFT_OUT) == {"dmcp", "extrapolate"}


def run_dmcp(project, before: dict) -> None:
    """dmcp trains the supernet on with the Markov chains towards the budget, extrapolate carries
    its decided point, and a budget change reruns dmcp (its search reads the budget); a latency
    budget binds through the latency table, one out of reach stops it in one line."""
    set_params(project, {"search": {"method": "dmcp", "flops": TINY["search"]["flops"]}})
    log = dvc(project, "repro", *THROUGH)
    assert "Running stage 'dmcp'" in log, log
    # The plan is AutoSlim's again: DVC restores the trained supernet from its run-cache, no training.
    assert "Running stage 'supernet'" not in log and out_hashes(project, "supernet") == before["supernet"], log
    dmcp = load(project, "stages/dmcp/metrics.json")
    assert dmcp["enabled"] and dmcp["searched_for"] == {"flops": BUDGET}
    assert dmcp["train_flops"] == dmcp["supernet_train_flops"] + dmcp["dmcp_train_flops"]
    trajectory = load(project, "stages/search/trajectory.json")
    assert trajectory["method"] == "dmcp" and len(trajectory["points"]) == 2
    assert trajectory["points"][1]["channels"] == torch.load(project / "stages/dmcp/network.pt", weights_only=False)["channels"]
    summary = load(project, "stages/extrapolate/summary.json")
    assert abs(summary["optimized"]["flops"] / BUDGET_FLOPS - 1) <= 0.01 and summary["selected_step"] == 1
    assert load(project, "stages/extrapolate/optimized.json")["note"].startswith("DMCP step 1")
    report = load(project, "stages/evaluate/report.json")
    assert report["search_cost"]["supernet_train_flops"] == dmcp["train_flops"]
    # alone reads the supernet, which is AutoSlim's again (same bytes): not stale this time.
    left_out = [stage for stage in LEFT_OUT if stage != "alone"]
    assert stale_stages(project) == left_out
    set_params(project, {"search": {"flops": OTHER_BUDGET}})
    assert set(stale_stages(project)) - set(left_out) == {"dmcp", "extrapolate"}
    # A latency budget out of reach stops in one line naming the range; one within it binds
    # through the latency table (the full network's predicted ms of the carried widths).
    set_params(project, {"search": {"flops": None, "latency": "5000ms"}})
    failed = slimnet_in(project, "dmcp")
    assert failed.exit_code == 2 and failed.stderr.count("\n") == 1 and "search.latency" in failed.stderr, failed.stderr
    assert load(project, "stages/dmcp/metrics.json") == dmcp  # nothing written
    low, high = (float(ms) for ms in re.findall(r"choose between ([0-9.]+)ms and ([0-9.]+)ms", failed.stderr)[0])
    target = round((low + high) / 2, 3)
    set_params(project, {"search": {"flops": None, "latency": f"{target}ms"}})
    ran = slimnet_in(project, "dmcp")
    assert ran.exit_code == 0, ran.output
    dmcp = load(project, "stages/dmcp/metrics.json")
    # One epoch of the tiny problem: the wiring (a target in ms, the chains' ms within the space's
    # range); that DMCP pulls the predicted ms to the target is tests/test_dmcp.py's.
    # The message gives the range to 0.01 ms, its low end rounded up.
    assert dmcp["targets"] == {"latency": pytest.approx(target)} and low - 0.01 <= dmcp["expected"]["latency"] <= high + 0.01
    assert dmcp["reached"]["latency"] == pytest.approx(dmcp["expected"]["latency"] / target, abs=1e-3)
