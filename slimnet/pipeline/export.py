"""export stage: ONNX and TorchScript of every trained network, BN folded, checked with onnxruntime.

The slimmable network is exported as one file per width (its own folded BN, static shapes):
see the README's "Deploying" section for why not one file taking the width as an input.
"""

from __future__ import annotations

import time
from pathlib import Path

from slimnet import atomic
from slimnet.config import Params, TrainParams
from slimnet.console.errors import SlimnetError
from slimnet.console.output import out, print_summary
from slimnet.deploy.exporters import ATOL, FORMATS, RTOL, SUFFIX, export_file
from slimnet.pipeline.common import STAGES, trained_model, variant_spec, write_timings
from slimnet.space.spec import load_spec
from slimnet.training.trained import load_slimmable, load_trained

EXPORT = STAGES / "export"
SLIMMABLE_MODEL = STAGES / "slimmable" / "model.pt"
DEPLOYED = ("optimized", "uniform")


def width_name(target_flops: int) -> str:
    """A file name for a FLOPs target: 8000000 -> 8M."""
    for scale, suffix in ((10**9, "G"), (10**6, "M"), (10**3, "K")):
        if target_flops >= scale:
            return f"{target_flops / scale:g}{suffix}"
    return str(target_flops)


def run_export(train: TrainParams, *, out_dir: Path = EXPORT, slimmable_model: Path = SLIMMABLE_MODEL) -> dict:
    """Writes ``<variant>.onnx`` and ``<variant>.torchscript.pt`` for the optimized and uniform
    networks of the first of ``train.seeds`` (what a user deploys; the random baseline is not), then
    ``slimmable/<target>.*`` per width of the slimmable network (none when it is off), in a
    fixed order (TorchScript's class-name counter makes the order part of the bytes).

    Tracked metrics hold what the bytes determine (sizes); the measured errors against
    PyTorch, like wall times, go to the untracked timings.json.
    """
    started = time.perf_counter()
    networks = []
    for variant in DEPLOYED:
        spec = load_spec(variant_spec(variant))
        networks.append((variant, spec, load_trained(spec, trained_model(variant, train.seeds[0]))))
    slimmable, targets = load_slimmable(slimmable_model)
    for index, target in enumerate(targets):
        networks.append((f"slimmable/{width_name(target)}", slimmable.specs[index], slimmable.plain(index)))
    sizes: dict = {}
    errors: dict = {}
    for name, spec, model in networks:
        sizes[name] = {"flops": spec.cost().flops}
        errors[name] = {}
        for fmt in FORMATS:
            written = export_file(model, spec, fmt, out_dir / f"{name}{SUFFIX[fmt]}")
            sizes[name][f"{fmt}_bytes"] = written["bytes"]
            errors[name][f"{fmt}_max_abs_error"] = written["max_abs_error"]
    # The slimmable folder always holds this index, so the output exists when the network is off.
    atomic.write_json(out_dir / "slimmable" / "widths.json", {n: s for n, s in sizes.items() if n.startswith("slimmable/")})
    metrics = {**sizes, "check": {"atol": ATOL, "rtol": RTOL, "passed": True}}
    atomic.write_json(out_dir / "metrics.json", metrics)
    write_timings(out_dir, {"export_seconds": round(time.perf_counter() - started, 2), "errors": errors})
    return {**sizes, "errors": errors}


def command(p: Params) -> None:
    """`python -m slimnet export` (no SPEC MODEL): export every deployed network, print the summary."""
    print_summary("export", run_export(p.train))


def export_one(spec: Path, model: Path, fmt: str, out_path: Path | None) -> None:
    """`python -m slimnet export SPEC MODEL`: one trained network in ``fmt``, written to
    ``out_path`` (default: MODEL with the format's suffix), checked against PyTorch."""
    if fmt not in FORMATS:
        raise SlimnetError(f"--format {fmt!r}: choose one of {', '.join(FORMATS)}")
    arch_spec = load_spec(spec)
    target = out_path if out_path is not None else model.with_name(model.name.split(".")[0] + SUFFIX[fmt])
    written = export_file(load_trained(arch_spec, model), arch_spec, fmt, target)
    out.print(f"wrote {target} ({written['bytes']:,} bytes); max |{fmt} - PyTorch| = {written['max_abs_error']:.2g}")
