"""Reruns on the tiny project (tests/pipeline_project.py): a new seed, forced stages."""

from __future__ import annotations

import csv

import pytest

from tests.pipeline_project import (
    dvc,
    load,
    out_hashes,
    set_params,
    stale_stages,
)
from tests.realdata import needs_fashion_mnist

pytestmark = [needs_fashion_mnist, pytest.mark.slow]


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
    assert stale_stages(project) == []


FORCED = ["scan", "data", "project", "supernet", "search", "extrapolate", "train@uniform-0", "evaluate", "export"]


def test_forcing_the_stages_rewrites_the_same_bytes_and_leaves_nothing_stale(project):
    assert stale_stages(project) == []
    before = {stage: out_hashes(project, stage) for stage in FORCED}
    # One dvc run for all of them (a run each costs its start-up, ~4 s); each stage reruns alone (-s).
    log = dvc(project, "repro", "-f", "-s", *FORCED)
    assert all(f"Running stage '{stage}'" in log for stage in FORCED), log
    # Compared stage by stage, so a failure names the stage and the file whose bytes moved.
    for stage in FORCED:
        assert out_hashes(project, stage) == before[stage], stage
    # Same bytes, so nothing downstream is stale (no 15-minute rerun for nothing).
    assert stale_stages(project) == []
