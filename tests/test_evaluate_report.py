"""evaluate's two views of one report: the headline metrics (what dvc exp show shows first) and
the summary table a person reads in an 80-column terminal."""

from __future__ import annotations

from rich.console import Console

from slimnet.pipeline.evaluate import draws_summary, headline, summary_table, verdict_keys, versus_draws
from slimnet.stats.verdict import paired_gain

SEEDS = [0, 1, 2]
TOP1 = {
    "optimized": [86.55, 87.21, 86.91],
    "uniform": [86.10, 86.93, 86.74],
    **{f"random-{d}": [85.0 + d / 3, 86.1, 85.7 + d / 5] for d in range(5)},
}


def network(name: str) -> dict:
    values = TOP1[name]
    mean = sum(values) / len(values)
    std = (sum((v - mean) ** 2 for v in values) / (len(values) - 1)) ** 0.5
    # The widest figures a default run gives: 26M FLOPs, over a million parameters, 12 ms.
    return {
        "top1": round(mean, 3),
        "top1_std": round(std, 3),
        "test_loss": 0.4,
        "flops": 26_123_456,
        "params": 1_234_567,
        "memory_mb": 12.345,
        "latency_pred_ms": 12.345,
        "supernet_top1": 61.2,
    }


def report() -> dict:
    metrics: dict = {"seeds": len(SEEDS), **{name: network(name) for name in TOP1}}
    draws = [name for name in TOP1 if name.startswith("random-")]
    metrics.update(verdict_keys(paired_gain(TOP1["optimized"], TOP1["uniform"])))
    metrics["random"] = draws_summary({name: metrics[name] for name in draws})
    metrics["vs_random"] = versus_draws(TOP1["optimized"], [TOP1[name] for name in draws])
    metrics["search_cost"] = {"supernet_train_flops": 3_000_000_000_000, "search_flops": 456_000_000_000}
    metrics["latency"] = {name: {"latency_ms": 12.345, "spread": 0.153} for name in TOP1}
    metrics["latency"]["device"] = {}
    return metrics


def test_the_headline_leads_with_cost_top1_and_verdicts_and_agrees_with_the_report():
    full = report()
    figures = headline(full)
    assert list(figures)[:9] == ["flops", "top1", "uniform", "random", "gain", "verdict", "gain_rnd", "verdict_rnd", "rank"]
    assert figures["top1"] == round(full["optimized"]["top1"], 2) and figures["uniform"] == round(full["uniform"]["top1"], 2)
    assert figures["random"] == round(full["random"]["top1"], 2)
    assert (figures["gain"], figures["gain_low"], figures["gain_high"]) == tuple(
        round(full[k], 2) for k in ("gain_top1", "gain_ci95_low", "gain_ci95_high")
    )
    assert figures["verdict_rnd"] == full["vs_random"]["verdict"] and figures["rank"] == full["vs_random"]["rank_among_draws"]
    assert figures["search_gmacs"] == 3456.0
    # No per-draw keys: the draws are one baseline here, each one stays in the report.
    assert not any(key.startswith("random-") for key in figures)


def test_without_draws_the_headline_has_no_random_columns():
    full = report()
    for key in [k for k in full if k.startswith("random")] + ["vs_random"]:
        del full[key]
    assert not any("rnd" in key or "random" in key or key == "rank" for key in headline(full))


def test_the_summary_fits_80_columns_without_cutting_a_name_or_a_number():
    console = Console(width=80, record=True, color_system=None)
    console.print(summary_table(report()))
    text = console.export_text()
    assert "…" not in text and max(len(line) for line in text.splitlines()) <= 80, text
    for name in TOP1:
        assert name in text
    for cell in ("26.12", "1.23M", "12.35", "12.35±15%", "random, 5 draws"):
        assert cell in text, (cell, text)


def test_the_presets_networks_cost_what_their_papers_say_and_the_closest_is_named():
    from pathlib import Path

    from slimnet.pipeline.presets import closest, presets

    found = {Path(p.path).name: p for p in presets(Path(__file__).resolve().parents[1] / "presets")}
    assert found["imagenet-mobilenet_v2.yaml"].costs["flops"] == 300_774_272  # MobileNetV2 1.0x, 224 px
    assert found["imagenet-resnet50.yaml"].costs["flops"] == 4_089_184_256
    assert found["cifar10-mobilenet_v2.yaml"].costs["flops"] == 87_976_448
    assert [Path(p.path).name for p in closest("flops", 200e6, list(found.values()))][0] == "imagenet-mobilenet_v2.yaml"
    assert closest("flops", 1e3, list(found.values())) == []


def test_the_report_figure_has_every_network_and_the_same_points_give_the_same_bytes():
    from slimnet.pipeline.report import _dodged, draw, points

    networks = points(report())
    assert sorted(p.variant for p in networks) == ["optimized"] + ["random"] * 5 + ["uniform"]
    assert all(p.mflops == 26.123456 for p in networks)
    # Side by side: uniform left of the searched network, every draw right of it, none on another.
    x = dict(zip(range(len(networks)), _dodged(networks)))
    by_variant = {p.variant: x[i] for i, p in enumerate(networks) if p.variant != "random"}
    draws = [x[i] for i, p in enumerate(networks) if p.variant == "random"]
    assert by_variant["uniform"] < by_variant["optimized"] < min(draws) and len(set(draws)) == 5
    first, second = draw(networks, "t"), draw(networks, "t")
    assert first[:8] == b"\x89PNG\r\n\x1a\n" and first == second


def test_a_figures_title_counts_in_the_singular_and_the_plural():
    from slimnet.pipeline.report import counted

    assert [counted(n, "experiment") for n in (1, 2)] == ["1 experiment", "2 experiments"]
