"""evaluate stage: test metrics of every trained network over its seeds, the paired verdict, and
what the search cost."""

from __future__ import annotations

import statistics
from pathlib import Path

import torch
from rich import box
from rich.table import Table

from slimnet import atomic
from slimnet.config import EvaluateParams, LatencyParams, Params, TrainParams
from slimnet.console.errors import SlimnetError
from slimnet.console.output import out
from slimnet.datasets.load import load_split
from slimnet.deploy.latency_model import LatencyTable, current_device_matches, predict_spec_ms
from slimnet.deploy.measure import Timing, network_latency
from slimnet.nn.network import Network
from slimnet.optimizers.trajectory import Trajectory
from slimnet.pipeline.common import (
    DATA,
    OPTIMIZER_NETWORKS,
    STAGES,
    pick_device,
    read_json,
    trained_model,
    write_csv,
    write_timings,
)
from slimnet.pipeline.networks import draw_of, trained_states
from slimnet.space.spec import ArchSpec, load_spec
from slimnet.stats.ranking import kendall_tau
from slimnet.stats.scoring import accuracy
from slimnet.stats.verdict import Comparison, draws_mean, mean_and_std, paired_gain, rank_among_draws


def _network(spec: ArchSpec, state: dict, device: torch.device) -> Network:
    model = Network(spec.blueprint())
    model.load_state_dict(state)
    return model.to(device, memory_format=torch.channels_last).eval()


def draws_summary(draws: dict[str, dict]) -> dict:
    """The random draws as one baseline: the mean and spread over the draws of each one's mean top-1
    (over the seeds), their mean cost, and the mean of the supernet's estimates when there are any."""
    top1 = [m["top1"] for m in draws.values()]
    mean, std = mean_and_std(top1)
    summary = {
        "draws": len(draws),
        "top1": round(mean, 3),
        "top1_std": _rounded(std),  # over the draws, not the seeds
        "flops": round(statistics.fmean(m["flops"] for m in draws.values())),
        "params": round(statistics.fmean(m["params"] for m in draws.values())),
    }
    if all("supernet_top1" in m for m in draws.values()):
        summary["supernet_top1"] = round(statistics.fmean(m["supernet_top1"] for m in draws.values()), 4)
    return summary


def _cpu_copy(model: Network) -> Network:
    """An independent copy of a trained network (timing moves it to the latency device)."""
    import copy

    return copy.deepcopy(model).cpu()


def search_cost(meta: dict, supernet_metrics: dict, search_metrics: dict, projected: ArchSpec, full: ArchSpec) -> dict:
    """What the search cost in multiply-accumulates, and an estimate of the same search without projection.

    ``supernet_metrics`` are the optimizer's training stage's (the supernet, or MorphNet's network).
    A direct search trains the supernet on the full problem: its FLOPs scale with the
    network's FLOPs (width, depth, resolution) and the number of training images; greedy
    slimming scales with the network's FLOPs and with the square of its unit count (steps x
    candidates per step). Counts, not seconds, so the estimate is the same on every machine.
    """
    flops_ratio = full.cost().flops / projected.cost().flops
    data_ratio = meta["counts"]["full/train"] / meta["counts"]["search/train"]
    units_ratio = len(full.channels) / len(projected.channels)
    supernet_flops = supernet_metrics["train_flops"]
    search_flops = search_metrics["search_flops"]
    direct = supernet_flops * flops_ratio * data_ratio + search_flops * flops_ratio * units_ratio**2
    return {
        "supernet_train_flops": supernet_flops,
        "search_flops": search_flops,
        "search_evaluations": search_metrics["evaluations"],
        "direct_flops_est": int(direct),
        "saving_x": round(direct / max(supernet_flops + search_flops, 1), 2),
    }


def _rounded(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def verdict_keys(comparison: Comparison) -> dict:
    """The comparison as flat metrics keys (`dvc exp show` columns)."""
    return {
        "gain_top1": comparison.gain,
        "gain_ci95_low": comparison.ci95_low,
        "gain_ci95_high": comparison.ci95_high,
        "verdict": comparison.verdict,
    }


def versus_draws(ours: list[float], draws: list[list[float]]) -> dict:
    """The searched network against the random draws (each a list of top-1 over the same seeds):
    the paired gain over the draws' mean seed by seed, its interval and verdict, and its rank
    among the draws by mean top-1 (1: above every draw)."""
    return {
        **verdict_keys(paired_gain(ours, draws_mean(draws))),
        "draws": len(draws),
        "rank_among_draws": rank_among_draws(ours, draws),
    }


def headline(report: dict) -> dict:
    """The few figures `dvc metrics show` and `dvc exp show` show, in the order they show them (a
    narrow terminal keeps the first columns): the searched network's cost and top-1, the baselines'
    top-1, the gains and verdicts; then the intervals, spreads and the rest. The whole report,
    every draw and diagnostic, is report.json."""
    o, u = report["optimized"], report["uniform"]
    random, versus = report.get("random"), report.get("vs_random")
    figures: dict = {"flops": o["flops"], "top1": round(o["top1"], 2), "uniform": round(u["top1"], 2)}
    if random:
        figures["random"] = round(random["top1"], 2)
    figures.update(gain=_rounded(report["gain_top1"], 2), verdict=report["verdict"])
    if versus:
        figures.update(gain_rnd=_rounded(versus["gain_top1"], 2), verdict_rnd=versus["verdict"], rank=versus["rank_among_draws"])
    figures.update(
        gain_low=_rounded(report["gain_ci95_low"], 2),
        gain_high=_rounded(report["gain_ci95_high"], 2),
        top1_std=_rounded(o["top1_std"], 2),
        uniform_std=_rounded(u["top1_std"], 2),
    )
    if random:
        figures["random_std"] = _rounded(random["top1_std"], 2)  # over the draws
    if versus:
        figures.update(gain_rnd_low=_rounded(versus["gain_ci95_low"], 2), gain_rnd_high=_rounded(versus["gain_ci95_high"], 2))
    figures.update(
        seeds=report["seeds"],
        params=o["params"],
        latency_ms=o["latency_pred_ms"],
        search_gmacs=round((report["search_cost"]["supernet_train_flops"] + report["search_cost"]["search_flops"]) / 1e9, 1),
    )
    return figures


def run_evaluate(
    evaluate: EvaluateParams,
    train: TrainParams,
    *,
    device: torch.device,
    out_dir: Path = STAGES / "evaluate",
    latency_params: LatencyParams = LatencyParams(),
) -> dict:
    meta = read_json(DATA / "meta.json", "data")
    meta["counts"].update(read_json(DATA / "search" / "meta.json", "project")["counts"])  # search_cost compares both
    trajectory = Trajectory.load(STAGES / "search" / "trajectory.json")
    trained_by = OPTIMIZER_NETWORKS[trajectory.method].parent  # the optimizer's training stage's folder
    supernet_metrics = read_json(trained_by / "metrics.json", trained_by.name)
    search_metrics = read_json(STAGES / "search" / "metrics.json", "search")
    test_set = load_split(DATA / "full" / "test.pt", device)
    table = LatencyTable.load(STAGES / "latency" / "table.json")
    latency_device = torch.device(latency_params.device if latency_params.device == "cpu" or torch.cuda.is_available() else "cpu")
    metrics: dict = {"seeds": len(train.seeds)}
    timed: dict = {}
    top1: dict[str, list[float]] = {}  # per network (random: one per draw), seed by seed
    losses: dict[str, list[float]] = {}
    specs: dict[str, ArchSpec] = {}
    draws: list[str] = []
    per_seed = []
    for variant in train.variants:
        for seed in train.seeds:
            for name, (spec, state) in trained_states(trained_model(variant, seed), variant).items():
                model = _network(spec, state, device)
                accuracy_, loss = accuracy(model, test_set.batches(evaluate.batch_size, shuffle=False, augment=False))
                top1.setdefault(name, []).append(accuracy_)
                losses.setdefault(name, []).append(loss)
                specs[name] = spec  # every seed trains the same architecture
                if seed == train.seeds[-1]:  # latency depends on the architecture alone: the last seed's
                    timed[name] = (_cpu_copy(model), spec)
                if variant == "random" and name not in draws:
                    draws.append(name)
                draw = draw_of(name)
                per_seed.append(
                    {
                        "variant": variant,
                        "draw": "" if draw is None else draw,
                        "seed": seed,
                        "top1": round(accuracy_, 3),
                        "test_loss": round(loss, 5),
                    }
                )
    for name, values in top1.items():
        if len(values) != len(train.seeds):
            raise SlimnetError(f"{name} is trained for {len(values)} of {len(train.seeds)} seeds: rerun `dvc repro train`")
        mean, std = mean_and_std(values)
        c = specs[name].cost()
        metrics[name] = {
            "top1": round(mean, 3),  # mean over the seeds
            "top1_std": _rounded(std),
            "test_loss": round(mean_and_std(losses[name])[0], 5),
            "flops": c.flops,
            "params": c.params,
            "memory_mb": round(c.memory / 2**20, 3),
            # Predicted from the measured table: a pure function of it and the spec, so a metric.
            "latency_pred_ms": round(predict_spec_ms(table, specs[name]), 3),
        }
    networks = list(top1)
    # Every network measured interleaved, block by block: a burst of load hits them alike.
    timing = Timing(threads=latency_params.threads, repeats=evaluate.latency_runs)
    measured = network_latency({v: (m, s.in_channels, s.resolution) for v, (m, s) in timed.items()}, timing, latency_device)
    latency = {
        v: {"latency_ms": round(measured[v].ms, 3), "predicted_ms": metrics[v]["latency_pred_ms"], **measured[v].as_dict()}
        for v in networks
    }
    latency["device"] = {
        "measured_on": latency_device.type,
        "table_device": table.device_name,
        "same_machine_as_table": current_device_matches(table, latency_device),
        # A processor's name does not tell its speed (two "AMD EPYC" machines differed 3x here):
        # how far the measurement is from the prediction says whether the table still fits.
        "measured_over_predicted": round(
            statistics.median(latency[v]["latency_ms"] / latency[v]["predicted_ms"] for v in networks), 3
        ),
    }
    # The search-quality diagnostic: does the supernet rank the trained networks as training does?
    projected = read_json(STAGES / "extrapolate" / "projected.json", "extrapolate")
    missing = [name for name in networks if name not in projected]
    if missing:
        raise SlimnetError(f"stages/extrapolate/projected.json has no {missing[0]}: rerun `dvc repro extrapolate`")
    estimates = [projected[name]["supernet_top1"] for name in networks]
    for name, estimate in zip(networks, estimates):
        metrics[name]["supernet_top1"] = estimate
    tau = kendall_tau(estimates, [metrics[name]["top1"] for name in networks])
    metrics["ranking"] = {"kendall_tau": _rounded(tau, 4), "networks": len(estimates)}
    # The verdict: optimized against uniform, seed by seed; against random (when it is trained)
    # seed by seed against the draws' mean, and its place among the draws.
    metrics.update(verdict_keys(paired_gain(top1["optimized"], top1["uniform"])))
    if draws:
        metrics["random"] = draws_summary({name: metrics[name] for name in draws})
        metrics["vs_random"] = versus_draws(top1["optimized"], [top1[name] for name in draws])
    full = load_spec(STAGES / "extrapolate" / "reference.json")
    metrics["search_cost"] = search_cost(meta, supernet_metrics, search_metrics, trajectory.reference, full)
    atomic.write_json(out_dir / "report.json", metrics)
    atomic.write_json(out_dir / "metrics.json", headline(metrics))
    write_csv(out_dir / "seeds.csv", per_seed)
    # Measured latency differs on every run: kept beside the DVC outputs, not in them.
    write_timings(out_dir, latency)
    # Search points on the full network's FLOPs scale (same cost ratio), beside the trained nets.
    rows = [
        {
            "flops": int(p.ratio.flops * full.cost().flops),
            "accuracy": p.accuracy,
            "series": "search (held-out, projected)",
        }
        for p in trajectory.points
    ]
    rows += [
        {
            "flops": metrics[name]["flops"],
            "accuracy": metrics[name]["top1"],
            "series": f"{'random draws' if name in draws else name} (test, mean of {len(train.seeds)})",
        }
        for name in networks
    ]
    write_csv(out_dir / "accuracy_vs_flops.csv", rows)
    return {**metrics, "latency": latency}


def command(p: Params, device: str) -> None:
    """`python -m slimnet evaluate`: score every trained network, print the table, the verdicts
    and any note on the latency table."""
    metrics = run_evaluate(p.evaluate, p.train, device=pick_device(device), latency_params=p.latency)
    out.print(summary_table(metrics))
    out.print(_verdict_line("uniform", metrics, metrics["seeds"]))
    if "vs_random" in metrics:
        vs = metrics["vs_random"]
        out.print(
            _verdict_line(f"the mean of {vs['draws']} random draws", vs, metrics["seeds"])
            + f"; rank among the draws {vs['rank_among_draws']} of {vs['draws'] + 1}"
        )
    if not metrics["latency"]["device"]["same_machine_as_table"]:
        out.print(
            f"note: the latency table was measured on {metrics['latency']['device']['table_device']}, not this machine: predictions are for that one"
        )
    elif not 2 / 3 <= metrics["latency"]["device"]["measured_over_predicted"] <= 3 / 2:
        out.print(
            f"note: measured latency is {metrics['latency']['device']['measured_over_predicted']:.2f}x the table's prediction: "
            "the table was measured on a machine of another speed (or under load); `dvc repro -f latency` measures it here"
        )


def summary_table(metrics: dict) -> Table:
    """Every network's figures, narrow enough for an 80-column terminal without cutting a name or a number."""
    table = Table(box=box.SIMPLE_HEAD, padding=(0, 1), pad_edge=False)
    for header in ("network", "top-1", "std", "MFLOPs", "params", "MB", "ms", "pred ms"):
        table.add_column(header, justify="left" if header == "network" else "right", no_wrap=True)

    def std(value: float | None) -> str:
        return "-" if value is None else f"{value:.2f}"

    for name in (n for n in metrics["latency"] if n != "device"):  # every network; random: each draw
        m, timed = metrics[name], metrics["latency"][name]
        table.add_row(
            name,
            f"{m['top1']:.2f}",
            std(m["top1_std"]),
            f"{m['flops'] / 1e6:.2f}",
            _thousands(m["params"]),
            f"{m['memory_mb']:.2f}",
            f"{timed['latency_ms']:.2f}±{timed['spread']:.0%}",
            f"{m['latency_pred_ms']:.2f}",
        )
    if "random" in metrics:
        m = metrics["random"]
        table.add_row(
            f"random, {m['draws']} draws",
            f"{m['top1']:.2f}",
            std(m["top1_std"]),
            f"{m['flops'] / 1e6:.2f}",
            _thousands(m["params"]),
        )
    return table


def _thousands(count: int) -> str:
    return f"{count / 1e6:.2f}M" if count >= 1e6 else f"{count / 1e3:.1f}K"


def _verdict_line(baseline: str, comparison: dict, seeds: int) -> str:
    gain = f"gain of optimized over {baseline}: {comparison['gain_top1']:+.2f} top-1 points"
    if comparison["gain_ci95_low"] is None:
        return f"{gain} (1 seed: no interval) -> {comparison['verdict']}"
    return (
        f"{gain}, 95% interval [{comparison['gain_ci95_low']:+.2f}, {comparison['gain_ci95_high']:+.2f}] "
        f"over {seeds} seeds -> {comparison['verdict']}"
    )
