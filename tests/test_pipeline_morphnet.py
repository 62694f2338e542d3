"""MorphNet through the tiny project's pipeline (tests/pipeline_project.py)."""

from __future__ import annotations

import pytest

from tests.pipeline_project import (
    SWITCHED_STAGES,
    TINY,
    changed_stages,
    dvc,
    load,
    out_hashes,
    set_params,
)
from tests.realdata import needs_fashion_mnist

pytestmark = [needs_fashion_mnist, pytest.mark.slow]


def test_morphnet_runs_the_pipeline_and_switching_back_restores_autoslims_outputs(project):
    """search.method: morphnet trains MorphNet's network instead of the supernet and searches it by
    thresholds, and a budget change after it reruns extrapolate onward only."""
    before = {stage: out_hashes(project, stage) for stage in SWITCHED_STAGES}
    assert load(project, "stages/morphnet/metrics.json") == {"enabled": False}
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
        set_params(project, {"train": {"variants": ["optimized", "uniform"]}})  # the draws' trainings are not this test's
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
    finally:
        set_params(project, {"search": {"method": "autoslim", "flops": TINY["search"]["flops"], "latency": None}})
        set_params(project, {"train": {"variants": TINY["train"]["variants"]}})
        log = dvc(project, "repro")
    # Switching back restores every AutoSlim output from DVC's run-cache, byte for byte, without training.
    assert "Running stage 'supernet'" not in log and "Running stage 'train@optimized-0'" not in log, log
    assert {stage: out_hashes(project, stage) for stage in SWITCHED_STAGES} == before
    assert changed_stages(dvc(project, "status")) == []
