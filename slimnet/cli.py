"""`python -m slimnet ...`: one command per pipeline stage, plus `arch` tools.

Commands are thin: validate params.yaml, call the library, print a short summary. Any
user-facing problem is one line on stderr and exit code 2, with nothing written.
"""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path
from typing import Callable, Optional

import typer
from rich.console import Console
from rich.table import Table

from slimnet.errors import SlimnetError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Channel numbers under a budget: AutoSlim + width transfer.")
arch_app = typer.Typer(no_args_is_help=True, help="Inspect, create and import architecture specs.")
app.add_typer(arch_app, name="arch")
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
    _print_summary("extrapolate", run_extrapolate(p.model, p.search, p.extrapolate))


@app.command()
@user_errors
def train(
    variant: str = typer.Option(..., "--variant", help="optimized or uniform"), params: Path = PARAMS, device: str = DEVICE
) -> None:
    """Train one variant from scratch on the full data (resumes after a kill)."""
    from slimnet.pipeline.common import pick_device
    from slimnet.pipeline.train import run_train

    p = _load(params)
    _print_summary(f"train {variant}", run_train(variant, p.train, device=pick_device(device)))


@app.command()
@user_errors
def evaluate(params: Path = PARAMS, device: str = DEVICE) -> None:
    """Test top-1, FLOPs, params, memory and CPU latency of both variants, and the search cost."""
    from slimnet.pipeline.common import pick_device
    from slimnet.pipeline.evaluate import run_evaluate

    p = _load(params)
    metrics = run_evaluate(p.evaluate, device=pick_device(device))
    table = Table("variant", "top-1 %", "FLOPs", "params", "memory MB", "latency ms")
    for variant in ("optimized", "uniform"):
        m = metrics[variant]
        table.add_row(
            variant, f"{m['top1']:.2f}", f"{m['flops']:,}", f"{m['params']:,}", f"{m['memory_mb']:.2f}", f"{m['latency_ms']:.2f}"
        )
    out.print(table)
    out.print(f"gain of optimized over uniform: {metrics['gain_top1']:+.2f} top-1 points")


# --------------------------------------------------------------------------- arch tools


def _show(spec, as_json: bool) -> None:
    c = spec.cost()
    if as_json:
        print(
            json.dumps(
                {
                    "arch": spec.arch,
                    "resolution": spec.resolution,
                    "flops": c.flops,
                    "params": c.params,
                    "memory": c.memory,
                    "channels": spec.channels,
                }
            )
        )
        return
    table = Table("unit", "channels", title=f"{spec.arch} at {spec.resolution}px ({spec.note or 'spec'})")
    for unit, channels in spec.channels.items():
        table.add_row(unit, str(channels))
    out.print(table)
    out.print(f"FLOPs {c.flops:,}  params {c.params:,}  memory {c.memory / 2**20:.2f} MB")


@arch_app.command("show")
@user_errors
def arch_show(
    spec: Path = typer.Argument(..., help="An arch spec JSON file."),
    as_json: bool = typer.Option(False, "--json"),
    supernet: Optional[Path] = typer.Option(None, "--supernet", help="Also check the spec is a configuration of this supernet."),
) -> None:
    """Per-unit channels, FLOPs, params and memory of a spec."""
    from slimnet.arch import load_spec

    loaded = load_spec(spec)
    if supernet is not None:
        from slimnet.supernet import check_config, load_supernet_file

        _, reference, space = load_supernet_file(supernet)
        if (loaded.arch, tuple(loaded.depth)) != (reference.arch, tuple(reference.depth)):
            raise SlimnetError(
                f"{spec} is {loaded.arch} at depth {list(loaded.depth)}, the supernet is {reference.arch} at depth {list(reference.depth)}"
            )
        check_config(space, loaded.channels)
    _show(loaded, as_json)


@arch_app.command("uniform")
@user_errors
def arch_uniform(
    arch: str = typer.Option(..., "--arch"),
    width: float = typer.Option(1.0, "--width"),
    cifar: bool = typer.Option(False, "--cifar", help="Small-input variant: 32 px, 10 classes by default."),
    resolution: Optional[int] = typer.Option(None, "--resolution"),
    classes: Optional[int] = typer.Option(None, "--classes"),
    in_channels: int = typer.Option(3, "--in-channels"),
    out_path: Path = typer.Option(..., "--out"),
) -> None:
    """Write the spec of the default network at one width multiplier."""
    from slimnet.arch import save_spec, uniform_spec
    from slimnet.models import check_arch

    check_arch(arch)
    resolution = resolution or (32 if cifar else 224)
    classes = classes or (10 if cifar else 1000)
    if resolution < 1 or classes < 1 or in_channels < 1:
        raise SlimnetError("--resolution, --classes and --in-channels must be positive")
    spec = uniform_spec(arch, width, resolution=resolution, num_classes=classes, in_channels=in_channels, cifar=cifar)
    save_spec(spec, out_path)
    _show(spec, as_json=False)


@arch_app.command("import-autoslim")
@user_errors
def arch_import(
    arch: str = typer.Option(..., "--arch"),
    channels: str = typer.Option(..., "--channels", help='The release\'s flat list, e.g. "8,8,96,...".'),
    resolution: int = typer.Option(224, "--resolution"),
    cifar: bool = typer.Option(False, "--cifar"),
    out_path: Path = typer.Option(..., "--out"),
) -> None:
    """Import a published AutoSlim channel list into a spec."""
    from slimnet.arch import save_spec
    from slimnet.models import check_arch
    from slimnet.published import import_autoslim, parse_channel_list

    check_arch(arch)
    spec = import_autoslim(arch, parse_channel_list(channels), resolution=resolution, cifar=cifar)
    save_spec(spec, out_path)
    _show(spec, as_json=False)


def main() -> None:
    app()
