"""The diagnostics on the tiny project (tests/pipeline_project.py): off by default, each reruns
alone when switched on."""

from __future__ import annotations

import pytest
import yaml

from tests.pipeline_project import (
    TINY,
    dvc,
    load,
    set_params,
    slimnet_in,
    stale_stages,
)
from tests.realdata import needs_fashion_mnist

pytestmark = [needs_fashion_mnist, pytest.mark.slow]


def test_the_stability_diagnostic_searches_again_on_another_sample_and_supernet_seed(project, tmp_path):
    assert load(project, "stages/stability/metrics.json") == {"enabled": False}  # off by default: nothing trained
    held_out = load(project, "data/search/meta.json")["counts"]["search/val"]
    assert held_out >= 2 * TINY["search"]["eval_images"]  # TINY leaves room for a second sample
    # A second sample of search.eval_images must exist beside the first: a clear error, nothing written.
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["diagnostics"]["stability"] = True
    params["search"]["eval_images"] = held_out  # the whole held-out split: no second sample left
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    failed = slimnet_in(project, "stability", "--params", str(tmp_path / "params.yaml"))
    assert failed.exit_code == 2 and "lower search.eval_images" in failed.stderr, failed.output
    assert len(failed.stderr.strip().splitlines()) == 1
    assert load(project, "stages/stability/metrics.json") == {"enabled": False}
    set_params(project, {"diagnostics": {"stability": True}})
    try:
        assert stale_stages(project) == ["stability"]  # it feeds no other stage
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
    assert stale_stages(project) == []


def test_the_alone_diagnostic_trains_max_and_min_beside_the_supernet(project):
    assert load(project, "stages/alone/metrics.json") == {"enabled": False}  # off by default: nothing trained
    set_params(project, {"diagnostics": {"alone": True}})
    try:
        assert stale_stages(project) == ["alone"]  # it feeds no other stage
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
