"""`python -m slimnet ...`: one command per pipeline stage (the `arch` tools live in pipeline/arch_tools.py).

Every DVC stage runs this module, so it holds the stage commands alone: code here is a
dependency of every stage. Commands are thin: validate params.yaml, call the library, print a short summary. Any
user-facing problem is one line on stderr and exit code 2, with nothing written.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer
from rich.table import Table

from slimnet.console.errors import SlimnetError
from slimnet.console.output import out, user_errors

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Channel numbers under a budget: AutoSlim + width transfer.")

PARAMS = typer.Option(Path("params.yaml"), "--params", help="The params file (DVC's params.yaml).")
DEVICE = typer.Option("auto", "--device", help="auto (CUDA when available), cpu, cuda, cuda:1 ...")


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
    from slimnet.pipeline.ranks import stage_processes
    from slimnet.pipeline.supernet import run_supernet

    p = _load(params)
    args = ["supernet", "--params", str(params), "--device", device]
    with stage_processes(p.resources, args, device, **{"supernet.batch_size": p.supernet.batch_size}) as rank:
        if rank is not None:
            world, on = rank
            summary = run_supernet(p.model, p.transfer, p.supernet, device=on, world=world, sync_bn=p.resources.sync_bn)
            if world.is_main:
                _print_summary("supernet", summary)


@app.command()
@user_errors
def alone(params: Path = PARAMS, device: str = DEVICE) -> None:
    """Diagnostic (diagnostics.alone): the supernet's max and min configurations trained alone, beside its own top-1 for them."""
    from slimnet.pipeline.alone import run_alone
    from slimnet.pipeline.common import pick_device

    p = _load(params)
    _print_summary("alone", run_alone(p.model, p.transfer, p.supernet, p.diagnostics, device=pick_device(device)))


@app.command()
@user_errors
def stability(params: Path = PARAMS, device: str = DEVICE) -> None:
    """Diagnostic (diagnostics.stability): the budget's point searched again on a second held-out sample and supernet seed."""
    from slimnet.pipeline.common import pick_device
    from slimnet.pipeline.stability import run_stability

    p = _load(params)
    record = run_stability(p.model, p.transfer, p.supernet, p.search, p.extrapolate, p.diagnostics, device=pick_device(device))
    _print_summary("stability", record)


@app.command()
@user_errors
def search(params: Path = PARAMS, device: str = DEVICE) -> None:
    """Greedy slimming from the largest configuration to the floor; writes the whole trajectory."""
    from slimnet.pipeline.ranks import stage_processes
    from slimnet.pipeline.search import run_search

    p = _load(params)
    with stage_processes(p.resources, ["search", "--params", str(params), "--device", device], device) as rank:
        if rank is not None:
            world, on = rank
            summary = run_search(p.search, device=on, world=world)
            if world.is_main:
                _print_summary("search", summary)


@app.command()
@user_errors
def latency(params: Path = PARAMS) -> None:
    """Measure the full network's per-layer latency table on latency.device (stages/latency/table.json)."""
    from slimnet.pipeline.latency import run_latency

    p = _load(params)
    _print_summary("latency", run_latency(p.model, p.latency))


@app.command()
@user_errors
def extrapolate(params: Path = PARAMS) -> None:
    """Pick the trajectory point for the budgets (search.flops/params/latency/memory), extrapolate it, match the binding one."""
    from slimnet.pipeline.extrapolate import run_extrapolate

    p = _load(params)
    _print_summary("extrapolate", run_extrapolate(p.model, p.search, p.extrapolate, p.supernet))


@app.command()
@user_errors
def train(
    variant: str = typer.Option(..., "--variant", help="optimized, uniform or random (every draw of extrapolate.random_draws)"),
    seed: int = typer.Option(..., "--seed", help="the training seed: one of train.seeds"),
    params: Path = PARAMS,
    device: str = DEVICE,
) -> None:
    """Train one variant from scratch on the full data with one seed (resumes after a kill)."""
    from slimnet.pipeline.ranks import stage_processes
    from slimnet.pipeline.train import run_train

    p = _load(params)
    args = ["train", "--variant", variant, "--seed", str(seed), "--params", str(params), "--device", device]
    with stage_processes(p.resources, args, device, **{"train.batch_size": p.train.batch_size}) as rank:
        if rank is not None:
            world, on = rank
            summary = run_train(variant, seed, p.train, device=on, world=world, sync_bn=p.resources.sync_bn)
            if world.is_main:
                _print_summary(f"train {variant} seed {seed}", summary)


@app.command()
@user_errors
def evaluate(params: Path = PARAMS, device: str = DEVICE) -> None:
    """Test top-1 over the seeds, the paired verdict, FLOPs, params, memory, latency, and the search cost."""
    from slimnet.pipeline.common import pick_device
    from slimnet.pipeline.evaluate import run_evaluate

    p = _load(params)
    metrics = run_evaluate(p.evaluate, p.train, device=pick_device(device), latency_params=p.latency)
    table = Table(
        "variant", "top-1 % (mean)", "std", "FLOPs", "params", "memory MB", "latency ms (measured ± spread)", "predicted ms"
    )
    for variant in (name for name in metrics["latency"] if name != "device"):  # every network; random: each draw
        m = metrics[variant]
        table.add_row(
            variant,
            f"{m['top1']:.2f}",
            "-" if m["top1_std"] is None else f"{m['top1_std']:.2f}",
            f"{m['flops']:,}",
            f"{m['params']:,}",
            f"{m['memory_mb']:.2f}",
            f"{metrics['latency'][variant]['latency_ms']:.2f} ± {metrics['latency'][variant]['spread']:.0%}",
            f"{m['latency_pred_ms']:.2f}",
        )
    if "random" in metrics:
        m = metrics["random"]
        spread = "-" if m["top1_std"] is None else f"{m['top1_std']:.2f}"
        table.add_row(f"random (mean of {m['draws']} draws)", f"{m['top1']:.2f}", spread, f"{m['flops']:,}", f"{m['params']:,}")
    out.print(table)
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


@app.command()
@user_errors
def slimmable(params: Path = PARAMS, device: str = DEVICE) -> None:
    """One network with switchable BN for every slimmable.targets budget, scored per width (off when no targets)."""
    from slimnet.pipeline.common import pick_device
    from slimnet.pipeline.slimmable import run_slimmable

    p = _load(params)
    _print_summary(
        "slimmable", run_slimmable(p.model, p.extrapolate, p.slimmable, p.slimmable_recipe(), device=pick_device(device))
    )


@app.command()
@user_errors
def export(
    spec: Path = typer.Argument(None, help="An arch spec (JSON). Leave out with MODEL to run the export stage."),
    model: Path = typer.Argument(None, help="Its trained weights (a train stage's model.pt, or a state dict)."),
    fmt: str = typer.Option("onnx", "--format", help="onnx or torchscript"),
    out_path: Path = typer.Option(None, "--out", help="Where to write (default: MODEL with .onnx / .torchscript.pt)."),
    params: Path = PARAMS,
) -> None:
    """BN-folded ONNX / TorchScript checked against PyTorch: of SPEC MODEL, or (no arguments) the stage: every trained network."""
    if spec is None and model is None:
        from slimnet.pipeline.export import run_export

        p = _load(params)
        _print_summary("export", run_export(p.train))
        return
    if spec is None or model is None:
        raise SlimnetError("export needs both SPEC and MODEL (or neither, to run the export stage)")
    from slimnet.deploy.exporters import FORMATS, SUFFIX, export_file
    from slimnet.space.spec import load_spec
    from slimnet.training.trained import load_trained

    if fmt not in FORMATS:
        raise SlimnetError(f"--format {fmt!r}: choose one of {', '.join(FORMATS)}")
    arch_spec = load_spec(spec)
    target = out_path if out_path is not None else model.with_name(model.name.split(".")[0] + SUFFIX[fmt])
    written = export_file(load_trained(arch_spec, model), arch_spec, fmt, target)
    out.print(f"wrote {target} ({written['bytes']:,} bytes); max |{fmt} - PyTorch| = {written['max_abs_error']:.2g}")


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
        from slimnet.pipeline.arch_tools import with_arch_tools

        with_arch_tools(app)
    app()
