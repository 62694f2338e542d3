"""The optimizer study's table: each optimizer's network beside uniform, the random draws and the
other optimizers, per budget, from per-training top-1 rows (the study's seeds.csv files).

    python scripts/optimizer_study.py study/2026-12-05/seeds.csv study/2026-12-06/seeds.csv --out study/2026-12-06

Every CSV has the columns target, variant, draw, seed, top1 (and may have others); a row's
variant is `optimized` (AutoSlim, the default method), `uniform`, `random`, or an optimizer's
name (`morphnet`, `dmcp`; `dmcp-half`: DMCP with `dmcp.start: half`) for its optimized network. Writes <out>/optimizers.md: per budget and
optimizer, top-1 mean ± standard deviation over seeds, the gain over uniform paired seed by
seed, over AutoSlim paired seed by seed, and over the draws' mean with a Welch interval, each
with its 95% interval and verdict.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from study_table import welch  # noqa: E402

from slimnet.stats.verdict import paired_gain, verdict_of  # noqa: E402

OPTIMIZERS = {"optimized": "AutoSlim", "morphnet": "MorphNet", "dmcp": "DMCP", "dmcp-half": "DMCP, official start"}


def read(paths: list[Path]) -> dict[tuple[str, str], dict[int, float]]:
    """{(target, network): {seed: top1}}; the draws as one network, each draw's mean over seeds."""
    found: dict[tuple[str, str], dict[int, float]] = defaultdict(dict)
    draws: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for path in paths:
        for row in csv.DictReader(path.read_text().splitlines()):
            if row["variant"] == "random":
                draws[row["target"]][row["draw"]].append(float(row["top1"]))
            else:
                found[(row["target"], row["variant"])][int(row["seed"])] = float(row["top1"])
    for target, per_draw in draws.items():
        found[(target, "random")] = {i: statistics.fmean(v) for i, v in enumerate(per_draw.values())}
    return found


def spread(values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.2f} ± {sd:.2f} ({len(values)})"


def paired(ours: dict[int, float], theirs: dict[int, float]) -> str:
    seeds = sorted(set(ours) & set(theirs))
    if len(seeds) < 2:
        return "-"
    c = paired_gain([ours[s] for s in seeds], [theirs[s] for s in seeds])
    return f"{c.gain:+.2f} [{c.ci95_low:+.2f}, {c.ci95_high:+.2f}] {c.verdict}"


def unpaired(ours: dict[int, float], draws: dict[int, float]) -> str:
    a, b = list(ours.values()), list(draws.values())
    if len(a) < 2 or len(b) < 2:
        return "-"
    gain, low, high = welch(
        {"top1": statistics.fmean(a), "top1_std": statistics.stdev(a)},
        {"top1": statistics.fmean(b), "top1_std": statistics.stdev(b)},
        len(a),
        len(b),
    )
    return f"{gain:+.2f} [{low:+.2f}, {high:+.2f}] {verdict_of(low, high)}"


def table(found: dict[tuple[str, str], dict[int, float]]) -> str:
    lines = [
        "| target | optimizer | top-1 (seeds) | vs uniform, paired [95% CI] | vs AutoSlim, paired [95% CI] | vs the draws' mean, Welch [95% CI] |",
        "|---|---|---|---|---|---|",
    ]
    targets = sorted({t for t, _ in found}, key=lambda t: float(t.rstrip("MK")))
    for target in targets:
        uniform, autoslim, draws = (found.get((target, v), {}) for v in ("uniform", "optimized", "random"))
        for variant, name in OPTIMIZERS.items():
            ours = found.get((target, variant))
            if not ours:
                continue
            versus_autoslim = "-" if variant == "optimized" else paired(ours, autoslim)
            lines.append(
                f"| {target} | {name} | {spread(list(ours.values()))} | {paired(ours, uniform)} | {versus_autoslim} "
                f"| {unpaired(ours, draws)} |"
            )
        lines.append(f"| {target} | uniform | {spread(list(uniform.values()))} | | | |")
        if draws:
            lines.append(f"| {target} | random draws | {spread(list(draws.values()))} (draws) | | | |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("seeds", type=Path, nargs="+")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    text = table(read(args.seeds))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "optimizers.md").write_text(text)
    print(text, end="")


if __name__ == "__main__":
    main()
