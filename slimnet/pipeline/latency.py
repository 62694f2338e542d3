"""latency stage: the per-layer latency table of the full network on latency.device.

The table is a measurement, so re-measuring it gives other bytes: it is the one tracked
output that is not a pure function of its inputs. DVC runs this stage only when what the
table describes changes (the network: model params and data/meta.json; the device and
timing: latency params; the measuring code), and the table is kept in git, so a clone predicts
from the same figures instead of measuring again. It names the processor it was measured on;
evaluate says when the machine it runs on is another one.
"""

from __future__ import annotations

from pathlib import Path

import torch

from slimnet.config import LatencyParams, ModelParams, Params
from slimnet.console.errors import SlimnetError
from slimnet.console.output import print_summary
from slimnet.deploy.latency_model import build_table
from slimnet.deploy.measure import Timing
from slimnet.pipeline.common import DATA, STAGES, read_json
from slimnet.pipeline.specs import check_network, dataset_resolution, full_uniform


def latency_device(params: LatencyParams) -> torch.device:
    if params.device == "cuda" and not torch.cuda.is_available():
        raise SlimnetError("latency.device: cuda is not available on this machine; set latency.device: cpu")
    return torch.device(params.device)


def run_latency(model: ModelParams, params: LatencyParams, out_dir: Path = STAGES / "latency") -> dict:
    device = latency_device(params)
    reference = full_uniform(model, read_json(DATA / "meta.json", "data"))
    layer_timing = Timing(threads=params.threads, warmup_ms=50.0, repeats=params.repeats)
    network_timing = Timing(threads=params.threads, repeats=max(params.repeats, 20))
    table = build_table(reference, device=device, timing=layer_timing, calibration_timing=network_timing)
    table.save(out_dir / "table.json")
    fit_error = max(abs(c["predicted_ms"] / c["measured_ms"] - 1) for c in table.calibration)
    return {
        "fit_error": round(fit_error, 4),  # largest error of the fit on its own uniform networks
        "device": table.device_name,
        "threads": table.threads,
        "layers": len(table.layers),
        "overhead_ms": table.overhead_ms,
        "reference_ms": next(c["measured_ms"] for c in table.calibration if c["width"] == 1.0),
    }


def command(p: Params) -> None:
    """`python -m slimnet latency`: measure the latency table, print the summary."""
    check_network(p, dataset_resolution())
    print_summary("latency", run_latency(p.model, p.latency))
