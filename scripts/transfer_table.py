"""Width transfer measured (issue 22): per optimizer, the network its search found on the projected
problem against the one it found on the full problem itself, both trained with the same seeds,
and what each search cost, from the experiments' metrics (`dvc exp show --json`).

    python scripts/transfer_table.py --out study/<date>-transfer [--prefix tr-] [--json exp.json] [--rev REV ...]

The experiments are those whose name starts with ``--prefix``; an experiment is *direct* when its
`transfer` is the identity (study_table.is_direct), else *projected*. Writes <out>/results.csv
(one row per optimizer and side), <out>/seeds.csv (every training's top-1) and <out>/table.md:
top-1 mean ± standard deviation over seeds, projected - direct with a Welch 95% interval, and the
overhead ratio, direct over projected, of the optimizer's training plus its search's evaluations
(multiply-accumulates, evaluate's `search_cost`).
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from study_table import experiments, is_direct, welch  # noqa: E402

NAMES = {"autoslim": "AutoSlim", "morphnet": "MorphNet", "dmcp": "DMCP"}


def sides(found: list[tuple[str, dict, dict]], prefix: str) -> dict[str, dict[str, list[dict]]]:
    """{method: {"projected" | "direct": [row, ...]}} of the experiments named with ``prefix``; a
    method has several rows on a side when it ran with different starts (DMCP's `dmcp.start`)."""
    table: dict[str, dict[str, list[dict]]] = {}
    for name, params, metrics in found:
        if not name.startswith(prefix) or "optimized" not in metrics:
            continue
        method = (params.get("search") or {}).get("method", "autoslim")
        start = (params.get("dmcp") or {}).get("start", "half") if method == "dmcp" else None
        cost = metrics.get("search_cost") or {}
        optimized = metrics["optimized"]
        row = {
            "experiment": name,
            "method": method,
            "start": start,
            "side": "direct" if is_direct(params) else "projected",
            "target": (params.get("search") or {}).get("flops"),
            "flops": optimized["flops"],
            "seeds": metrics.get("seeds", 1),
            "top1": optimized["top1"],
            "top1_std": optimized.get("top1_std"),
            "uniform_top1": (metrics.get("uniform") or {}).get("top1"),
            "optimizer_gmacs": round((cost.get("supernet_train_flops", 0) + cost.get("search_flops", 0)) / 1e9, 1),
        }
        table.setdefault(method, {}).setdefault(row["side"], []).append(row)
    return table


def seed_rows(shown: list[dict], names: set[str]) -> list[dict]:
    """Every training's top-1 of the named experiments (their stages/evaluate/seeds.csv, read from
    each experiment's commit)."""
    rows = []
    for entry in shown:
        for experiment in entry.get("experiments") or []:
            for rev in experiment.get("revs") or []:
                if rev.get("name") not in names:
                    continue
                read = subprocess.run(["git", "show", f"{rev['rev']}:stages/evaluate/seeds.csv"], capture_output=True, text=True)
                rows += [{"experiment": rev["name"], **row} for row in csv.DictReader(read.stdout.splitlines())]
    return rows


def label(row: dict) -> str:
    name = NAMES.get(row["method"], row["method"])
    return f"{name}, {row['start']} start" if row["start"] else name


def markdown(table: dict[str, dict[str, list[dict]]]) -> str:
    lines = [
        "| optimizer | projected top-1 | direct top-1 | projected - direct [95% CI] | optimizer + search, GMACs (projected / direct) | overhead, direct / projected |",
        "|---|---|---|---|---|---|",
    ]
    for found in table.values():
        for projected, direct in pairs(found):
            lines.append(row_line(projected, direct))
    return "\n".join(lines) + "\n"


def pairs(found: dict[str, list[dict]]) -> list[tuple[dict, dict]]:
    """Each projected row with the direct row of the same start, else the method's only direct row
    (the direct side of DMCP ran once, with the official start)."""
    direct = found.get("direct") or []
    matched = []
    for projected in found.get("projected") or []:
        same = [row for row in direct if row["start"] == projected["start"]] or direct[:1]
        if same:
            matched.append((projected, same[0]))
    return matched


def row_line(projected: dict, direct: dict) -> str:
    gain, low, high = welch(projected, direct, projected["seeds"], direct["seeds"])
    interval = "" if low is None else f" [{low:+.2f}, {high:+.2f}]"
    ratio = direct["optimizer_gmacs"] / max(projected["optimizer_gmacs"], 1e-9)
    side = "" if projected["start"] == direct["start"] else f"; direct: {direct['start']} start"
    return (
        f"| {label(projected)}{side} | {projected['top1']:.2f} ± {projected['top1_std'] or 0:.2f} "
        f"| {direct['top1']:.2f} ± {direct['top1_std'] or 0:.2f} | {gain:+.2f}{interval} "
        f"| {projected['optimizer_gmacs']:,.1f} / {direct['optimizer_gmacs']:,.1f} | {ratio:.1f}x |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--prefix", default="tr-")
    parser.add_argument("--json", type=Path, help="a saved `dvc exp show --json` (default: run it)")
    parser.add_argument(
        "--rev", action="append", help="a baseline commit the experiments ran on, repeatable (default: dvc exp show's)"
    )
    args = parser.parse_args()
    if args.json:
        shown = json.loads(args.json.read_text())
    else:
        shown = []
        for rev in args.rev or [None]:
            command = ["dvc", "exp", "show", "--json"] + (["--rev", rev] if rev else [])
            shown += json.loads(subprocess.run(command, capture_output=True, text=True, check=True).stdout)
    table = sides(experiments(shown), args.prefix)
    if not table:
        sys.exit(f"transfer_table: no experiment named {args.prefix}* with evaluate's metrics")
    args.out.mkdir(parents=True, exist_ok=True)
    rows = [row for found in table.values() for side in found.values() for row in side]
    with open(args.out / "results.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    seeds = seed_rows(shown, {row["experiment"] for row in rows})
    if seeds:
        with open(args.out / "seeds.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(seeds[0]), lineterminator="\n")
            writer.writeheader()
            writer.writerows(seeds)
    (args.out / "table.md").write_text(markdown(table))
    print(markdown(table), end="")


if __name__ == "__main__":
    main()
