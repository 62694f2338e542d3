"""Measured costs of a plain network: CPU latency (1 thread, batch 1, median after warm-up)."""

from __future__ import annotations

import statistics
import time

import torch
from torch import nn


@torch.no_grad()
def cpu_latency_ms(model: nn.Module, in_channels: int, resolution: int, *, warmup: int = 5, runs: int = 20) -> float:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model = model.eval().to("cpu", memory_format=torch.channels_last)
        x = torch.randn(1, in_channels, resolution, resolution).to(memory_format=torch.channels_last)
        for _ in range(warmup):
            model(x)
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - start)
        return 1000 * statistics.median(times)
    finally:
        torch.set_num_threads(threads)
