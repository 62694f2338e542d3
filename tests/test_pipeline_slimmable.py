"""The slimmable network on the tiny project (tests/pipeline_project.py): off by default, then
trained for two budgets, scored and exported."""

from __future__ import annotations

import csv

import pytest
import torch
import yaml

from tests.pipeline_project import dvc, load, set_params, stale_stages
from tests.realdata import needs_fashion_mnist

pytestmark = [needs_fashion_mnist, pytest.mark.slow]


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
    set_params(project, {"slimmable": {"targets": [flops, "1.5M"], "epochs": 2}})
    log = dvc(project, "repro")
    assert "Running stage 'slimmable'" in log and "Running stage 'export'" in log
    assert "Stage 'train@optimized-0' didn't change, skipping" in log
    rows = load(project, "stages/slimmable/metrics.json")["targets"]
    assert [r["target_flops"] for r in rows] == [int(float(flops[:-1]) * 1e6), 1_500_000]
    assert rows[0]["flops"] > rows[1]["flops"] and abs(rows[1]["flops"] / 1.5e6 - 1) <= 0.01
    # Compared with the optimized network of the first seed (earlier tests may have added seeds).
    seeds = csv.DictReader((project / "stages/evaluate/seeds.csv").read_text().splitlines())
    first = next(float(row["top1"]) for row in seeds if row["variant"] == "optimized" and row["seed"] == "0")
    assert rows[0]["individual"] == "optimized" and rows[0]["individual_top1"] == pytest.approx(first, abs=1e-3)
    assert rows[0]["gap_top1"] == pytest.approx(rows[0]["top1"] - first, abs=2e-3)
    assert rows[1]["individual"] is None  # no individually trained network at 1.5M in this run
    assert all(25.0 < r["top1"] <= 100.0 for r in rows), rows
    network, targets = load_slimmable(project / "stages/slimmable/model.pt")
    widths = load(project, "stages/export/slimmable/widths.json")
    assert sorted(widths) == sorted(f"slimmable/{n}" for n in ("1.5M", flops))
    x, _ = next(load_split(project / "data/full/test.pt").batches(32, shuffle=False, augment=False))
    x = x.contiguous()
    for index, name in enumerate((flops, "1.5M")):
        network.switch(index)
        with torch.no_grad():
            expected = network(x)
        data = (project / f"stages/export/slimmable/{name}.onnx").read_bytes()
        assert torch.allclose(run_onnx(data, x), expected, atol=1e-4, rtol=1e-3)
    assert stale_stages(project) == []
