"""export stage: ONNX and TorchScript of every trained network, BN folded, checked with onnxruntime."""

from __future__ import annotations

import time
from pathlib import Path

from slimnet import atomic
from slimnet.arch import load_spec
from slimnet.export import ATOL, FORMATS, RTOL, SUFFIX, export_file, load_trained
from slimnet.pipeline.common import STAGES, VARIANTS, trained_model, variant_spec, write_timings

EXPORT = STAGES / "export"


def run_export(*, out_dir: Path = EXPORT) -> dict:
    """Writes ``<variant>.onnx`` and ``<variant>.torchscript.pt`` per variant, in a fixed order
    (TorchScript's class-name counter makes the order part of the bytes), and the sizes.

    Tracked metrics hold what the bytes determine (sizes); the measured errors against
    PyTorch, like wall times, go to the untracked timings.json.
    """
    started = time.perf_counter()
    sizes: dict = {}
    errors: dict = {}
    for variant in VARIANTS:
        spec = load_spec(variant_spec(variant))
        model = load_trained(spec, trained_model(variant))
        sizes[variant], errors[variant] = {}, {}
        for fmt in FORMATS:
            written = export_file(model, spec, fmt, out_dir / f"{variant}{SUFFIX[fmt]}")
            sizes[variant][f"{fmt}_bytes"] = written["bytes"]
            errors[variant][f"{fmt}_max_abs_error"] = written["max_abs_error"]
    metrics = {**sizes, "check": {"atol": ATOL, "rtol": RTOL, "passed": True}}
    atomic.write_json(out_dir / "metrics.json", metrics)
    write_timings(out_dir, {"export_seconds": round(time.perf_counter() - started, 2), "errors": errors})
    return {**sizes, "errors": errors}
