"""The study's table and plot from the experiments' metrics (`dvc exp show --json`).

    python scripts/study_table.py [--out study] [--json exp.json]

Writes <out>/results.csv (one row per experiment and variant), <out>/table.md (the README table)
and <out>/top1_vs_flops.png (top-1 vs FLOPs with 95% error bars over seeds; needs matplotlib,
otherwise the CSV alone, which `dvc plots show` can draw). Experiments without evaluate's
metrics (failed or not run) are left out and named on stderr.

An experiment whose `transfer` is the identity (width and depth 1, data_fraction 1, no
resolution) searched the full problem itself: its optimized network is the *direct* baseline
of the projected search at the same budget (study.sh DIRECT=1), shown in its own column with
the search cost each way, measured (supernet training + greedy search, multiply-accumulates).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import subprocess
import sys
from pathlib import Path

METRICS = "stages/evaluate/metrics.json"
VARIANTS = ("optimized", "uniform", "random", "direct")


def is_direct(params: dict) -> bool:
    """Whether an experiment searched the full problem (no projection: plain AutoSlim)."""
    transfer = params.get("transfer") or {}
    return (
        float(transfer.get("width", 1.0)) == 1.0
        and float(transfer.get("depth", 1.0)) == 1.0
        and float(transfer.get("data_fraction", 1.0)) == 1.0
        and transfer.get("resolution") is None
        and bool(transfer)
    )


def experiments(shown: list[dict]) -> list[tuple[str, dict, dict]]:
    """(name, params, metrics) of every experiment; the workspace alone when there is none."""
    found, workspace = [], []

    def record(entry: dict, into: list) -> None:
        data = entry.get("data") or {}
        params = (data.get("params") or {}).get("params.yaml", {}).get("data", {})
        metrics = (data.get("metrics") or {}).get(METRICS, {}).get("data")
        name = experiment_name(entry)
        if metrics is not None:
            from slimnet.pipeline.report import whole_report

            metrics = whole_report(entry.get("rev", ""), metrics)
        if metrics is None:
            print(f"left out {name}: no {METRICS} (or no stages/evaluate/report.json in its commit)", file=sys.stderr)
            return
        into.append((name, params, metrics))

    for entry in shown:
        if entry.get("rev") == "workspace":
            record(entry, workspace)
        for experiment in entry.get("experiments") or []:
            for rev in experiment.get("revs") or []:
                record(rev, found)
    return found or workspace


def experiment_name(entry: dict) -> str:
    """The name an experiment goes by in the table: its own, else its short revision."""
    return entry.get("name") or entry.get("rev", "")[:7]


def point_rule(params: dict) -> str:
    """Which trajectory point extrapolate carried over (extrapolate.point; the default: ratio)."""
    return (params.get("extrapolate") or {}).get("point", "ratio")


def most_seeds_per_target(found: list[tuple[str, dict, dict]]) -> list[tuple[str, dict, dict]]:
    """Per budget (and per kind: projected or direct search), the experiment over the most seeds:
    the study's one-seed shards are left out."""
    best: dict = {}
    for name, params, metrics in found:
        target = json.dumps([(params.get("search") or {}).get("flops"), point_rule(params), is_direct(params)])
        if target not in best or metrics.get("seeds", 1) > best[target][2].get("seeds", 1):
            best[target] = (name, params, metrics)
    return list(best.values())


def draws_per_target(found: list[tuple[str, dict, dict]]) -> dict[str, tuple[str, dict, dict]]:
    """Per budget, the experiment that trained the random draws (most seeds first): the study
    trains them at fewer seeds than optimized and uniform (study.sh DRAW_SEEDS)."""
    best: dict = {}
    for name, params, metrics in found:
        if "random" not in metrics or is_direct(params):
            continue
        target = json.dumps([(params.get("search") or {}).get("flops"), point_rule(params)])
        if target not in best or metrics.get("seeds", 1) > best[target][2].get("seeds", 1):
            best[target] = (name, params, metrics)
    return best


def with_draws(chosen: list[tuple[str, dict, dict]], found: list[tuple[str, dict, dict]]) -> list[tuple[str, dict, dict]]:
    """The chosen experiments, each lacking random given its budget's draws experiment beside it."""
    draws = draws_per_target(found)
    extra = []
    for _name, params, metrics in chosen:
        target = json.dumps([(params.get("search") or {}).get("flops"), point_rule(params)])
        if "random" not in metrics and not is_direct(params) and target in draws:
            extra.append(draws[target])
    return chosen + extra


def welch(a: dict, b: dict, a_n: int, b_n: int) -> tuple[float, float | None, float | None]:
    """Difference of two means (top1, top1_std over a_n and b_n values) with a Welch 95% interval."""
    gain = a["top1"] - b["top1"]
    s1, s2 = a["top1_std"], b["top1_std"]
    if s1 is None or s2 is None or a_n < 2 or b_n < 2:
        return gain, None, None
    v1, v2 = s1**2 / a_n, s2**2 / b_n
    se = math.sqrt(v1 + v2)
    dof = round((v1 + v2) ** 2 / max(v1**2 / (a_n - 1) + v2**2 / (b_n - 1), 1e-12)) if se > 0 else a_n + b_n - 2
    half = t975(max(1, dof)) * se
    return gain, gain - half, gain + half


def t975(dof: int) -> float:
    from slimnet.stats.verdict import t975 as quantile

    return quantile(dof)


def rows_of(experiments: list[tuple[str, dict, dict]], draws_only: frozenset[str] = frozenset()) -> list[dict]:
    """One row per experiment and variant; from the experiments in ``draws_only`` (the draws'
    experiment beside a budget's main one), the random row alone."""
    rows = []
    for name, params, metrics in experiments:
        seeds = metrics.get("seeds", 1)
        direct = is_direct(params)
        cost = metrics.get("search_cost") or {}
        for variant in VARIANTS:
            if variant not in metrics or (direct and variant != "optimized"):
                continue  # a direct experiment's uniform network is the projected one's, trained alike
            if name in draws_only and variant != "random":
                continue
            m = metrics[variant]
            std = m.get("top1_std")
            n = m.get("draws", seeds)  # random: the mean of its draws, its spread over the draws
            half = None if std is None or n < 2 else t975(n - 1) * std / math.sqrt(n)
            rows.append(
                {
                    "experiment": name,
                    "target": (params.get("search") or {}).get("flops"),
                    "point": point_rule(params),
                    "variant": variant,
                    "flops": m["flops"],
                    "params": m["params"],
                    "seeds": seeds,
                    "top1": m["top1"],
                    "top1_std": std,
                    "top1_ci95": None if half is None else round(half, 3),
                    "supernet_top1": m.get("supernet_top1"),
                    "gain_vs_uniform": metrics.get("gain_top1") if variant == "optimized" else None,
                    "ci95_low": metrics.get("gain_ci95_low") if variant == "optimized" else None,
                    "ci95_high": metrics.get("gain_ci95_high") if variant == "optimized" else None,
                    "verdict": metrics.get("verdict") if variant == "optimized" else None,
                    "vs_random": (metrics.get("vs_random") or {}).get("verdict") if variant == "optimized" else None,
                    "vs_random_gain": (metrics.get("vs_random") or {}).get("gain_top1") if variant == "optimized" else None,
                    "vs_random_low": (metrics.get("vs_random") or {}).get("gain_ci95_low") if variant == "optimized" else None,
                    "vs_random_high": (metrics.get("vs_random") or {}).get("gain_ci95_high") if variant == "optimized" else None,
                    "draws": m.get("draws") if variant == "random" else None,
                    "search_flops": _search_flops(cost) if variant == "optimized" else None,
                }
            )
            if direct:
                rows[-1].update(variant="direct", gain_vs_uniform=None, ci95_low=None, ci95_high=None, verdict=None)
                rows[-1].update(vs_random=None, supernet_top1=None)  # another supernet's estimate: not comparable
    against_separate_draws(rows)
    return sorted(rows, key=lambda r: (r["flops"], r["point"] != "ratio", VARIANTS.index(r["variant"])))


def against_separate_draws(rows: list[dict]) -> None:
    """Where the draws were trained in another experiment (at fewer seeds), the optimized row's
    comparison with them: its mean over its seeds minus the draws' mean, with a Welch interval
    (unpaired: the draws' spread holds their training noise and their differences)."""
    from slimnet.stats.verdict import verdict_of

    draws = {(r["target"], r["point"]): r for r in rows if r["variant"] == "random"}
    for row in rows:
        r = draws.get((row["target"], row["point"]))
        if row["variant"] != "optimized" or row["vs_random"] is not None or r is None or r["experiment"] == row["experiment"]:
            continue
        gain, low, high = welch(row, r, row["seeds"], r["draws"] or 1)
        row.update(vs_random=verdict_of(low, high), vs_random_gain=round(gain, 3))
        row.update(vs_random_low=None if low is None else round(low, 3), vs_random_high=None if high is None else round(high, 3))


def _search_flops(cost: dict) -> int | None:
    """What the search measurably cost: supernet training plus greedy slimming, in multiply-accumulates."""
    if "supernet_train_flops" not in cost or "search_flops" not in cost:
        return None
    return int(cost["supernet_train_flops"]) + int(cost["search_flops"])


def versus_direct(projected: dict, direct: dict | None) -> str:
    """The projected search's network against the direct search's, at one budget: the difference
    of the mean top-1 with a Welch 95% interval (the seeds are paired with uniform, not with each
    other), and what the projection saved, both measured."""
    if direct is None:
        return "-"
    gain, low, high = welch(projected, direct, projected["seeds"], direct["seeds"])
    text = f"{gain:+.2f}"
    if low is not None:
        text += f" [{low:+.2f}, {high:+.2f}]"
    if projected.get("search_flops") and direct.get("search_flops"):
        text += f", search {direct['search_flops'] / projected['search_flops']:.1f}x cheaper"
    return text


def target_size(row: dict) -> float:
    """The budget as a number ("6M" -> 6e6), for ordering; the network's FLOPs where it is not a size."""
    text = str(row["target"])
    scale = {"K": 1e3, "M": 1e6, "G": 1e9}.get(text[-1:].upper())
    try:
        return float(text[:-1]) * scale if scale else float(text)
    except ValueError:
        return float(row["flops"])


def fmt(value, spec: str = ".2f") -> str:
    return "-" if value is None else format(value, spec)


def cell(row: dict | None) -> str:
    return "-" if row is None else f"{row['top1']:.2f} ± {fmt(row['top1_std'])} ({row['flops'] / 1e6:.2f}M)"


def cell_draws(row: dict | None) -> str:
    """The draws' mean ± their spread, how many, and at how many seeds each."""
    if row is None:
        return "-"
    return f"{row['top1']:.2f} ± {fmt(row['top1_std'])} ({row['draws']} draws x {row['seeds']} seed{'s' * (row['seeds'] > 1)}, {row['flops'] / 1e6:.2f}M)"


def table(rows: list[dict]) -> str:
    by_experiment: dict[str, dict[str, dict]] = {}
    for row in rows:
        by_experiment.setdefault(row["experiment"], {})[row["variant"]] = row
    directs = {(row["target"], row["point"]): row for row in rows if row["variant"] == "direct"}
    header = "| target | seeds | optimized top-1 | uniform top-1 | random draws top-1 | gain vs uniform [95% CI] | verdict | vs the draws' mean [95% CI] |"
    if directs:
        header += " direct top-1 | optimized - direct [95% CI], search cost |"
    lines = [header, "|---" * header.count(" | ") + "|---|"]
    randoms = {(row["target"], row["point"]): row for row in rows if row["variant"] == "random"}
    projected = [v for v in by_experiment.values() if "optimized" in v]
    for variants in sorted(projected, key=lambda v: (target_size(v["optimized"]), v["optimized"]["point"] != "ratio")):
        o = variants["optimized"]

        interval = f"{o['gain_vs_uniform']:+.2f} [{fmt(o['ci95_low'], '+.2f')}, {fmt(o['ci95_high'], '+.2f')}]"
        target = o["target"] if o["point"] == "ratio" else f"{o['target']} (point: {o['point']})"
        random = randoms.get((o["target"], o["point"]))
        versus = "-" if o["vs_random_gain"] is None else f"{o['vs_random_gain']:+.2f}"
        if o["vs_random_low"] is not None:
            versus += f" [{o['vs_random_low']:+.2f}, {o['vs_random_high']:+.2f}]"
        versus += f" {fmt(o['vs_random'], 's')}"
        line = f"| {target} | {o['seeds']} | {cell(o)} | {cell(variants.get('uniform'))} | {cell_draws(random)} | {interval} | {o['verdict']} | {versus} |"
        if directs:
            direct = directs.get((o["target"], o["point"]))
            line += f" {cell(direct)} | {versus_direct(o, direct)} |"
        lines.append(line)
    footer = (
        "top-1: mean ± standard deviation over seeds (FLOPs); random: the draws' mean ± their spread; gain vs uniform:\n"
        "paired, seed by seed; vs the draws: paired by seed where the draws trained at every seed, else the optimized\n"
        "mean minus the draws' mean with a Welch interval."
    )
    tau, count = ranking(rows)
    if tau is not None:
        footer += (
            f"\nKendall's tau between the supernet's estimate and the from-scratch top-1 over the {count} networks: {tau:+.2f}"
        )
    return "\n".join(lines) + "\n\n" + footer + "\n"


def ranking(rows: list[dict]) -> tuple[float | None, int]:
    """Kendall's tau between the supernet's estimates and the trained top-1 over every network of
    the study (all budgets and variants): does the supernet rank networks as training does?"""
    from slimnet.stats.ranking import kendall_tau

    # A network two experiments share (the uniform one under both point rules) counts once.
    unique = {(r["variant"], r["flops"], r["params"], r["top1"]): r for r in rows}
    scored = [r for r in unique.values() if r.get("supernet_top1") is not None]
    if len(scored) < 2:
        return None, len(scored)
    return kendall_tau([r["supernet_top1"] for r in scored], [r["top1"] for r in scored]), len(scored)


def plot(rows: list[dict], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    figure, axes = plt.subplots(figsize=(6, 4))
    for variant, marker in zip(VARIANTS, "osd^"):
        points = [r for r in rows if r["variant"] == variant and r["point"] == "ratio"]  # the default rule
        if points:
            axes.errorbar(
                [r["flops"] / 1e6 for r in points],
                [r["top1"] for r in points],
                yerr=[r["top1_ci95"] or 0 for r in points],
                marker=marker,
                capsize=3,
                label=variant,
            )
    axes.set_xlabel("MFLOPs (multiply-accumulates)")
    axes.set_ylabel("test top-1 % (mean, 95% CI over seeds)")
    axes.legend()
    axes.grid(alpha=0.3)
    figure.tight_layout()
    # Fixed metadata so the same results give the same bytes.
    figure.savefig(path, dpi=120, metadata={"Software": None})
    return True


def revisions(shown: list[dict]) -> dict[str, str]:
    """Each experiment's git revision, by the name the table uses."""
    found = {}
    for entry in shown:
        for experiment in entry.get("experiments") or []:
            for rev in experiment.get("revs") or []:
                found[experiment_name(rev)] = rev.get("rev", "")
    return found


def seed_rows(rows: list[dict], shown: list[dict]) -> list[dict]:
    """Every trained network's test top-1, seed by seed: evaluate's seeds.csv, read from each
    experiment's commit (an experiment whose commit git cannot show is left out, named on stderr)."""
    revs, out = revisions(shown), []
    for name in dict.fromkeys(r["experiment"] for r in rows):
        first = next(r for r in rows if r["experiment"] == name)
        shown_file = subprocess.run(
            ["git", "show", f"{revs.get(name, name)}:stages/evaluate/seeds.csv"], capture_output=True, text=True
        )
        if shown_file.returncode != 0:
            print(f"no seeds.csv for {name}: {shown_file.stderr.strip().splitlines()[:1]}", file=sys.stderr)
            continue
        direct = first["variant"] == "direct"
        draws_only = all(r["variant"] == "random" for r in rows if r["experiment"] == name)
        for seed in csv.DictReader(shown_file.stdout.splitlines()):
            if direct and seed["variant"] != "optimized":
                continue  # the direct experiment's uniform networks are the projected one's
            if draws_only and seed["variant"] != "random":
                continue  # its optimized and uniform networks are the main experiment's first seed
            out.append(
                {
                    "target": first["target"],
                    "point": first["point"],
                    "experiment": name,
                    "variant": "direct" if direct else seed["variant"],
                    "draw": seed.get("draw", ""),  # random: the draw seed (evaluate lists every draw)
                    "seed": seed["seed"],
                    "top1": seed["top1"],
                    "test_loss": seed["test_loss"],
                }
            )
    return out


def point_rules(seeds: list[dict]) -> str:
    """The other point rules against the default (ratio) at each budget, seed by seed on the
    optimized network: the same supernet and trajectory, so the seeds pair as they do with uniform."""
    from slimnet.stats.verdict import paired_gain

    top1: dict[tuple[str, str], dict[str, float]] = {}
    for row in seeds:
        if row["variant"] == "optimized":
            top1.setdefault((row["target"], row["point"]), {})[row["seed"]] = float(row["top1"])
    lines = []
    for (target, point), other in sorted(top1.items(), key=lambda item: target_size({"target": item[0][0], "flops": 0})):
        default = top1.get((target, "ratio"))
        common = sorted(set(other) & set(default or {}))
        if point == "ratio" or not common:
            continue
        gain = paired_gain([other[s] for s in common], [default[s] for s in common])
        interval = "" if gain.ci95_low is None else f" [{gain.ci95_low:+.2f}, {gain.ci95_high:+.2f}]"
        lines.append(f"- {target}: point {point} - ratio = {gain.gain:+.2f}{interval} over {gain.seeds} seeds, {gain.verdict}")
    return "" if not lines else "\nOptimized network, point rules compared (paired by seed):\n" + "\n".join(lines) + "\n"


def write_rows(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("study"))
    parser.add_argument("--json", type=Path, help="a saved `dvc exp show --json` (default: run it)")
    args = parser.parse_args()
    text = (
        args.json.read_text()
        if args.json
        else subprocess.run(["dvc", "exp", "show", "--json"], check=True, capture_output=True, text=True).stdout
    )
    shown = json.loads(text)
    found = experiments(shown)
    chosen = most_seeds_per_target(found)
    names = {name for name, _, _ in chosen}
    both = with_draws(chosen, found)
    rows = rows_of(both, draws_only=frozenset(name for name, _, _ in both if name not in names))
    if not rows:
        sys.exit("no experiment has evaluate's metrics: run scripts/study.sh first")
    args.out.mkdir(parents=True, exist_ok=True)
    write_rows(args.out / "results.csv", rows)
    seeds = seed_rows(rows, shown)
    if seeds:
        write_rows(args.out / "seeds.csv", seeds)
    text = table(rows) + point_rules(seeds)
    (args.out / "table.md").write_text(text)
    drawn = plot(rows, args.out / "top1_vs_flops.png")
    print(text)
    print(f"wrote {args.out}/results.csv, table.md" + (", top1_vs_flops.png" if drawn else " (no matplotlib: no plot)"))


if __name__ == "__main__":
    main()
