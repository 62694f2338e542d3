"""`python -m slimnet ...`: one command per pipeline stage (the `arch` tools live in pipeline/arch_tools.py).

Every DVC stage runs this module, so it holds the stage commands alone: code here is a
dependency of every stage. A command parses its options, loads params.yaml and calls its stage's
`pipeline/<stage>.py` `command`, which runs the stage and prints what it shows (so editing one
stage's printing reruns that stage alone). A stage that a setting can switch off asks
pipeline/off.py first, before the stage and torch are imported. Any user-facing problem is one
line on stderr and exit code 2, with nothing written.
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from slimnet.console.errors import SlimnetError
from slimnet.console.output import user_errors

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Channel numbers under a budget: AutoSlim + width transfer.")

PARAMS = typer.Option(Path("params.yaml"), "--params", help="The params file (DVC's params.yaml).")
DEVICE = typer.Option("auto", "--device", help="auto (CUDA when available), cpu, cuda, cuda:1 ...")


def _load(params: Path):
    from slimnet.config import load_params

    return load_params(params)


# --------------------------------------------------------------------------- stages


@app.command()
@user_errors
def scan(params: Path = PARAMS) -> None:
    """Fingerprint data.root into data/source.json (cheap: no image is read); data reruns when it changes."""
    from slimnet.pipeline.scan import command

    command(_load(params))


@app.command()
@user_errors
def data(params: Path = PARAMS) -> None:
    """Prepare the full train/val/test splits under data/full (image folders: every image is decoded once)."""
    from slimnet.pipeline.data import command

    command(_load(params))


@app.command()
@user_errors
def project(params: Path = PARAMS) -> None:
    """Write the projected search splits under data/search (transfer.resolution, transfer.data_fraction)."""
    from slimnet.pipeline.project import command

    command(_load(params))


@app.command()
@user_errors
def plan(params: Path = PARAMS) -> None:
    """Whether search.method trains the supernet (AutoSlim and DMCP do: switching between them keeps it)."""
    from slimnet.pipeline.plan import command

    command(_load(params))


@app.command()
@user_errors
def supernet(params: Path = PARAMS, device: str = DEVICE) -> None:
    """Train the slimmable supernet of the projected network (sandwich rule, in-place distillation)."""
    from slimnet.pipeline.off import run_if_off

    p = _load(params)
    if run_if_off("supernet", p):  # decided before the stage (and torch) is imported
        return
    from slimnet.pipeline.supernet import command

    command(p, device, relaunch=["supernet", "--params", str(params), "--device", device])


@app.command()
@user_errors
def morphnet(params: Path = PARAMS, device: str = DEVICE) -> None:
    """search.method morphnet: train the largest configuration with MorphNet's FLOPs-weighted penalty on its BN scales."""
    from slimnet.pipeline.off import run_if_off

    p = _load(params)
    if run_if_off("morphnet", p):  # decided before the stage (and torch) is imported
        return
    from slimnet.pipeline.morphnet import command

    command(p, device, relaunch=["morphnet", "--params", str(params), "--device", device])


@app.command()
@user_errors
def dmcp(params: Path = PARAMS, device: str = DEVICE) -> None:
    """search.method dmcp: train the supernet on with DMCP's Markov chains towards the budgets (a budget change reruns it)."""
    from slimnet.pipeline.off import run_if_off

    p = _load(params)
    if run_if_off("dmcp", p):  # decided before the stage (and torch) is imported
        return
    from slimnet.pipeline.dmcp import command

    command(p, device, relaunch=["dmcp", "--params", str(params), "--device", device])


@app.command()
@user_errors
def alone(params: Path = PARAMS, device: str = DEVICE) -> None:
    """Diagnostic (diagnostics.alone): the supernet's max and min configurations trained alone, beside its own top-1 for them."""
    from slimnet.pipeline.off import run_if_off

    p = _load(params)
    if run_if_off("alone", p):  # decided before the stage (and torch) is imported
        return
    from slimnet.pipeline.alone import command

    command(p, device)


@app.command()
@user_errors
def stability(params: Path = PARAMS, device: str = DEVICE) -> None:
    """Diagnostic (diagnostics.stability): the budget's point searched again on a second held-out sample and supernet seed."""
    from slimnet.pipeline.off import run_if_off

    p = _load(params)
    if run_if_off("stability", p):  # decided before the stage (and torch) is imported
        return
    from slimnet.pipeline.stability import command

    command(p, device)


@app.command()
@user_errors
def search(params: Path = PARAMS, device: str = DEVICE) -> None:
    """Greedy slimming from the largest configuration to the floor; writes the whole trajectory."""
    from slimnet.pipeline.search import command

    command(_load(params), device, relaunch=["search", "--params", str(params), "--device", device])


@app.command()
@user_errors
def latency(params: Path = PARAMS) -> None:
    """Measure the full network's per-layer latency table on latency.device (stages/latency/table.json)."""
    from slimnet.pipeline.latency import command

    command(_load(params))


@app.command()
@user_errors
def extrapolate(params: Path = PARAMS) -> None:
    """Pick the trajectory point for the budgets (search.flops/params/latency/memory), extrapolate it, match the binding one."""
    from slimnet.pipeline.extrapolate import command

    command(_load(params))


@app.command()
@user_errors
def train(
    variant: str = typer.Option(..., "--variant", help="optimized, uniform or random (every draw of extrapolate.random_draws)"),
    seed: int = typer.Option(..., "--seed", help="the training seed: one of train.seeds"),
    params: Path = PARAMS,
    device: str = DEVICE,
) -> None:
    """Train one variant from scratch on the full data with one seed (resumes after a kill)."""
    from slimnet.pipeline.train import command

    relaunch = ["train", "--variant", variant, "--seed", str(seed), "--params", str(params), "--device", device]
    command(_load(params), variant, seed, device, relaunch=relaunch)


@app.command()
@user_errors
def evaluate(params: Path = PARAMS, device: str = DEVICE) -> None:
    """Test top-1 over the seeds, the paired verdict, FLOPs, params, memory, latency, and the search cost."""
    from slimnet.pipeline.evaluate import command

    command(_load(params), device)


@app.command()
@user_errors
def report(
    experiments: bool = typer.Option(False, "--experiments", help="Every experiment of `dvc exp show` (a sweep) in one figure."),
    out_path: Path = typer.Option(
        None, "--out", help="Where to write the PNG (default: the stage's, or ./accuracy_vs_flops.png)."
    ),
) -> None:
    """Test top-1 (mean ± std over seeds) against FLOPs of every trained network, as a PNG."""
    from slimnet.pipeline.report import command

    command(experiments, out_path)


@app.command()
@user_errors
def slimmable(params: Path = PARAMS, device: str = DEVICE) -> None:
    """One network with switchable BN for every slimmable.targets budget, scored per width (off when no targets)."""
    from slimnet.pipeline.off import run_if_off

    p = _load(params)
    if run_if_off("slimmable", p):  # decided before the stage (and torch) is imported
        return
    from slimnet.pipeline.slimmable import command

    command(p, device)


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
    from slimnet.pipeline.export import command, export_one

    if spec is None and model is None:
        command(_load(params))
    elif spec is None or model is None:
        raise SlimnetError("export needs both SPEC and MODEL (or neither, to run the export stage)")
    else:
        export_one(spec, model, fmt, out_path)


def main() -> None:
    """Entry point: the stage commands, plus the arch tools when the command line asks for them."""
    if sys.argv[1:2] in ([], ["arch"], ["--help"], ["-h"]):
        from slimnet.pipeline.arch_tools import with_arch_tools

        with_arch_tools(app)
    app()
