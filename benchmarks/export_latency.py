"""Batch-1, one-thread CPU latency of a network as PyTorch (BN unfolded and folded), exported ONNX in
onnxruntime and exported TorchScript, interleaved and repeated (medians), plus the file sizes.

    python benchmarks/export_latency.py                      # MobileNetV2 0.35x CIFAR-style at 28 px (the default's reference)
    python benchmarks/export_latency.py SPEC.json [--rounds 7 --runs 50]

Random weights with random BN statistics: latency does not depend on the values.
"""

from __future__ import annotations

import argparse
import io
import statistics
import time
import warnings
from pathlib import Path

import torch

from slimnet.deploy.exporters import example_input, onnx_bytes, torchscript_bytes
from slimnet.nn.fold import fold_batchnorm
from slimnet.nn.network import Network
from slimnet.space.spec import load_spec, uniform_spec


def per_call_ms(fn, x, runs: int) -> float:
    for _ in range(5):
        fn(x)
    started = time.perf_counter()
    for _ in range(runs):
        fn(x)
    return (time.perf_counter() - started) / runs * 1e3


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("spec", nargs="?", type=Path)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()
    torch.set_num_threads(1)
    spec = (
        load_spec(args.spec)
        if args.spec
        else uniform_spec("mobilenet_v2", 0.35, resolution=28, num_classes=10, in_channels=1, cifar=True)
    )
    torch.manual_seed(0)
    model = Network(spec.blueprint()).eval()
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_var.uniform_(0.5, 2.0)
            m.running_mean.normal_()
    folded = fold_batchnorm(model)
    onnx_data, ts_data = onnx_bytes(model, spec), torchscript_bytes(model, spec)
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    session = onnxruntime.InferenceSession(onnx_data, options, providers=["CPUExecutionProvider"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scripted = torch.jit.load(io.BytesIO(ts_data))
    x = example_input(spec)
    feed = {"images": x.numpy()}
    # channels-last is how slimnet runs and times networks (evaluate's latency); NCHW is torch's default.
    last = x.contiguous(memory_format=torch.channels_last)
    model_last = Network(spec.blueprint()).eval()
    model_last.load_state_dict(model.state_dict())
    model_last = model_last.to(memory_format=torch.channels_last)
    folded_last = fold_batchnorm(model).to(memory_format=torch.channels_last)
    runners = {
        "pytorch": lambda t: model(t),
        "pytorch folded": lambda t: folded(t),
        "pytorch c-last": lambda t: model_last(last),
        "folded c-last": lambda t: folded_last(last),
        "torchscript": lambda t: scripted(t),
        "onnxruntime": lambda t: session.run(None, feed),
    }
    times: dict[str, list[float]] = {name: [] for name in runners}
    with torch.no_grad():
        for _ in range(args.rounds):  # interleaved: load changes hit every runner alike
            for name, fn in runners.items():
                times[name].append(per_call_ms(fn, x, args.runs))
    base = statistics.median(times["pytorch"])
    print(
        f"{spec.arch} at {spec.resolution} px, {spec.cost().flops:,} FLOPs; ONNX {len(onnx_data):,} B, TorchScript {len(ts_data):,} B"
    )
    for name, values in times.items():
        median = statistics.median(values)
        print(
            f"{name:15s} median {median:7.3f} ms  (min {min(values):.3f}, max {max(values):.3f})  {base / median:5.2f}x pytorch"
        )


if __name__ == "__main__":
    main()
