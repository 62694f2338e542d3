"""`python -m slimnet ...`: one command per pipeline stage (the `arch` tools live in arch_cli.py).

Every DVC stage runs this module, so it holds the stage commands alone: code here is a
dependency of every stage. Commands are thin: validate params.yaml, call the library, print a short summary. Any
user-facing problem is one line on stderr and exit code 2, with nothing written.
"""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path
from typing import Callable

import typer
from rich.console import Console
from rich.table import Table

from slimnet.errors import SlimnetError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Channel numbers under a budget: AutoSlim + width transfer.")
out = Console()

PARAMS = typer.Option(Path("params.yaml"), "--params", help="The params file (DVC's params.yaml).")
DEVICE = typer.Option("auto", "--device", help="auto (CUDA when available), cpu, cuda, cuda:1 ...")


def user_errors(command: Callable) -> Callable:
    """One clear line and exit code 2 for SlimnetError, instead of a traceback."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except SlimnetError as error:
            print(f"error: {error}", file=sys.stderr)
            raise typer.Exit(2) from None

    return wrapper


def _load(params: Path):
    from slimnet.config import load_params

    return load_params(params)


def _print_summary(title: str, summary: dict) -> None:
    out.print(f"[bold]{title}[/bold] " + json.dumps(summary, default=str))


# --------------------------------------------------------------------------- stages


@app.command()
@user_errors
def scan(params: Path = PARAMS) -> None:
    """Fingerprint data.root into data/source.json (cheap: no image is read); data reruns when it changes."""
    from slimnet.pipeline.scan import run_scan

    p = _load(params)
    _print_summary("scan", run_scan(p.data))


@app.command()
@user_errors
def data(params: Path = PARAMS) -> None:
    """Prepare the full train/val/test splits under data/full (image folders: every image is decoded once)."""
    from slimnet.pipeline.data import run_data

    p = _load(params)
    summary = run_data(p.data)
    _print_summary("data", summary)
    skipped = summary.get("skipped")
    if skipped:
        images = "image" if skipped == 1 else "images"
        out.print(f"left out {skipped} {images} that cannot be decoded (data.skip_invalid: true); see data/meta.json")


@app.command()
@user_errors
def project(params: Path = PARAMS) -> None:
    """Write the projected search splits under data/search (transfer.resolution, transfer.data_fraction)."""
    from slimnet.pipeline.project import run_project

    p = _load(params)
    _print_summary("project", run_project(p.transfer))


@app.command()
@user_errors
def supernet(params: Path = PARAMS, device: str = DEVICE) -> None:
    """Train the slimmable supernet of the projected network (sandwich rule, in-place distillation)."""
    from slimnet.pipeline.common import pick_device
    from slimnet.pipeline.supernet import run_supernet

    p = _load(params)
    _print_summary("supernet", run_supernet(p.model, p.transfer, p.supernet, device=pick_device(device)))


@app.command()
@user_errors
def search(params: Path = PARAMS, device: str = DEVICE) -> None:
    """Greedy slimming from the largest configuration to the floor; writes the whole trajectory."""
    from slimnet.pipeline.common import pick_device
    from slimnet.pipeline.search import run_search

    p = _load(params)
    _print_summary("search", run_search(p.search, device=pick_device(device)))


@app.command()
@user_errors
def extrapolate(params: Path = PARAMS) -> None:
    """Pick the trajectory point for search.flops, extrapolate it to the full network, match FLOPs."""
    from slimnet.pipeline.extrapolate import run_extrapolate

    p = _load(params)
    _print_summary("extrapolate", run_extrapolate(p.model, p.search, p.extrapolate, p.supernet))


@app.command()
@user_errors
def train(
    variant: str = typer.Option(..., "--variant", help="optimized, uniform or random"),
    seed: int = typer.Option(..., "--seed", help="the training seed: one of train.seeds"),
    params: Path = PARAMS,
    device: str = DEVICE,
) -> None:
    """Train one variant from scratch on the full data with one seed (resumes after a kill)."""
    from slimnet.pipeline.common import pick_device
    from slimnet.pipeline.train import run_train

    p = _load(params)
    _print_summary(f"train {variant} seed {seed}", run_train(variant, seed, p.train, device=pick_device(device)))


@app.command()
@user_errors
def evaluate(params: Path = PARAMS, device: str = DEVICE) -> None:
    """Test top-1 over the seeds, the paired verdict, FLOPs, params, memory, latency, and the search cost."""
    from slimnet.pipeline.common import pick_device
    from slimnet.pipeline.evaluate import run_evaluate

    p = _load(params)
    metrics = run_evaluate(p.evaluate, p.train, device=pick_device(device))
    table = Table("variant", "top-1 % (mean)", "std", "FLOPs", "params", "memory MB", "latency ms")
    for variant in p.train.variants:
        m = metrics[variant]
        table.add_row(
            variant,
            f"{m['top1']:.2f}",
            "-" if m["top1_std"] is None else f"{m['top1_std']:.2f}",
            f"{m['flops']:,}",
            f"{m['params']:,}",
            f"{m['memory_mb']:.2f}",
            f"{metrics['latency'][variant]['latency_ms']:.2f}",
        )
    out.print(table)
    out.print(_verdict_line("uniform", metrics, metrics["seeds"]))
    if "vs_random" in metrics:
        out.print(_verdict_line("random", metrics["vs_random"], metrics["seeds"]))


def _verdict_line(baseline: str, comparison: dict, seeds: int) -> str:
    gain = f"gain of optimized over {baseline}: {comparison['gain_top1']:+.2f} top-1 points"
    if comparison["gain_ci95_low"] is None:
        return f"{gain} (1 seed: no interval) -> {comparison['verdict']}"
    return (
        f"{gain}, 95% interval [{comparison['gain_ci95_low']:+.2f}, {comparison['gain_ci95_high']:+.2f}] "
        f"over {seeds} seeds -> {comparison['verdict']}"
    )


def main() -> None:
    """Entry point: the stage commands, plus the arch tools when the command line asks for them."""
    if sys.argv[1:2] in ([], ["arch"], ["--help"], ["-h"]):
        from slimnet.arch_cli import with_arch_tools

        with_arch_tools(app)
    app()
