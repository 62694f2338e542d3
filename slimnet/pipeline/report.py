"""report stage: every trained network of a run as test top-1 against FLOPs, with the spread over
seeds, as a PNG that `dvc plots show` renders; `--experiments` draws every experiment of a sweep
(`dvc exp show`) in one figure."""

from __future__ import annotations

import io
import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

from slimnet import atomic
from slimnet.console.errors import SlimnetError
from slimnet.console.output import out
from slimnet.pipeline.common import STAGES, read_json

REPORT = "stages/evaluate/report.json"
METRICS = "stages/evaluate/metrics.json"
FIGURE = STAGES / "report" / "accuracy_vs_flops.png"
# variant: (colour, marker, legend label)
STYLE = {
    "optimized": ("#c0392b", "*", "searched"),
    "uniform": ("#2c3e50", "s", "uniform"),
    "random": ("#95a5a6", "o", "random draw"),
}


@dataclass(frozen=True)
class Point:
    variant: str  # optimized, uniform, random
    mflops: float
    top1: float  # mean over the seeds
    std: float | None  # over the seeds; None with one seed


def points(report: dict) -> list[Point]:
    """The networks evaluate scored (each random draw on its own)."""
    found = []
    for name, m in report.items():
        variant = "random" if name.startswith("random-") else name  # "random" alone: the draws' summary
        if (variant != name or name in ("optimized", "uniform")) and isinstance(m, dict) and "flops" in m:
            found.append(Point(variant, m["flops"] / 1e6, m["top1"], m["top1_std"]))
    return found


def whole_report(rev: str, metrics: dict | None) -> dict | None:
    """evaluate's whole report for an experiment of `dvc exp show --json`: its metrics file holds the
    headline figures, the report is read from the experiment's commit (the workspace: from disk);
    experiments made before the split have everything in their metrics file."""
    if metrics is not None and isinstance(metrics.get("optimized"), dict):
        return metrics
    if rev == "workspace":
        path = Path(REPORT)
        return json.loads(path.read_text()) if path.is_file() else None
    shown = subprocess.run(["git", "show", f"{rev}:{REPORT}"], capture_output=True, text=True)
    return json.loads(shown.stdout) if shown.returncode == 0 else None


def experiment_reports(shown: list[dict]) -> dict[str, dict]:
    """Each experiment's whole report by name (the workspace's alone when there is no experiment)."""
    found, workspace = {}, {}
    for entry in shown:
        if entry.get("rev") == "workspace":
            report = whole_report("workspace", None)
            if report:
                workspace["workspace"] = report
        for experiment in entry.get("experiments") or []:
            for rev in experiment.get("revs") or []:
                metrics = ((rev.get("data") or {}).get("metrics") or {}).get(METRICS, {}).get("data")
                report = whole_report(rev.get("rev", ""), metrics) if metrics is not None else None
                if report:
                    found[rev.get("name") or rev.get("rev", "")[:7]] = report
    return found or workspace


def _dodged(networks: list[Point], step: float = 0.012) -> list[float]:
    """x positions: the networks of one budget (within 2% of each other's FLOPs) side by side,
    the searched one in the middle, uniform left of it, the draws to the right, ``step`` of their
    FLOPs apart, so that error bars do not hide each other."""
    order = {"uniform": -1, "optimized": 0}
    x, seen = [], {}
    for p in networks:
        cluster = next((c for c in seen if abs(p.mflops / c - 1) <= 0.02), p.mflops)
        if p.variant == "random":
            seen[cluster] = seen.get(cluster, 1) + 1
            slot = seen[cluster]
        else:
            seen.setdefault(cluster, 1)
            slot = order[p.variant]
        x.append(p.mflops * (1 + step * slot))
    return x


def draw(networks: list[Point], title: str) -> bytes:
    """The figure as PNG bytes: the same points give the same bytes (no date or version inside)."""
    try:
        import matplotlib
    except ImportError:
        raise SlimnetError("the report needs matplotlib: python3 -m pip install matplotlib") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.5), dpi=100)
    x = _dodged(networks)
    for variant, (colour, marker, label) in STYLE.items():
        chosen = [i for i, p in enumerate(networks) if p.variant == variant]
        if not chosen:
            continue
        axes.errorbar(
            [x[i] for i in chosen],
            [networks[i].top1 for i in chosen],
            yerr=[networks[i].std or 0.0 for i in chosen],
            fmt=marker,
            color=colour,
            markersize=11 if marker == "*" else 6,
            capsize=3,
            alpha=0.7 if variant == "random" else 1.0,
            label=label,
            zorder=3 if variant == "optimized" else 2,
        )
    # Networks of one budget cost the same within 1%: a margin keeps them apart from the frame.
    low, high = min(p.mflops for p in networks), max(p.mflops for p in networks)
    axes.set_xlim(low * 0.85, high * 1.15)
    axes.ticklabel_format(axis="x", useOffset=False, style="plain")
    axes.set_xlabel("MFLOPs (multiply-accumulates; one budget's networks set side by side)")
    axes.set_ylabel("test top-1 %  (mean ± std over seeds)")
    axes.set_title(title, fontsize=10)
    axes.grid(alpha=0.3)
    axes.legend(loc="lower right", fontsize=8)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", metadata={"Software": None})
    plt.close(figure)
    return buffer.getvalue()


def run_report(out_path: Path = FIGURE) -> Path:
    report = read_json(STAGES / "evaluate" / "report.json", "evaluate")
    seeds = report["seeds"]
    atomic.write_bytes(out_path, draw(points(report), f"Trained networks of this run ({counted(seeds, 'seed')})"))
    return out_path


def counted(count: int, noun: str) -> str:
    """'1 seed', '3 seeds': a figure's title names what it averages or holds."""
    return f"{count} {noun}{'s' * (count != 1)}"


def run_sweep(out_path: Path) -> Path:
    """Every experiment of `dvc exp show` (a budget sweep) in one figure."""
    shown = subprocess.run(["dvc", "exp", "show", "--json"], capture_output=True, text=True)
    if shown.returncode != 0:
        last = (shown.stderr.strip().splitlines() or ["no message"])[-1]
        raise SlimnetError(f"dvc exp show failed: {last} (run it in the project, where dvc.yaml is)")
    reports = experiment_reports(json.loads(shown.stdout))
    if not reports:
        raise SlimnetError("no experiment has evaluate's report: run `dvc exp run` (or `dvc repro`) first")
    networks = [p for report in reports.values() for p in points(report)]
    atomic.write_bytes(out_path, draw(networks, f"Trained networks of {counted(len(reports), 'experiment')}"))
    return out_path


def command(experiments: bool, out_path: Path | None) -> None:
    path = run_sweep(out_path or Path("accuracy_vs_flops.png")) if experiments else run_report(out_path or FIGURE)
    out.print(f"report: wrote {path}")
