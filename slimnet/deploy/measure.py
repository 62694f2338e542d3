"""Measured latency of plain networks (batch 1), stable enough to rank two networks.

A forward of a small network lasts a few milliseconds, about a scheduler time slice, so on a
shared machine one timed call says more about what else ran than about the network. Here a
measurement is ``repeats`` time-based blocks (each runs the network in a loop for at least
``block_ms`` and records the mean per call) after ``warmup_ms`` of warm-up, with the process
pinned to as many cores as ``threads``, torch limited to ``threads``, and the thread at
real-time priority (SCHED_FIFO) where permitted. The estimate is the median of the fastest
``quantile`` share of the blocks: other work only ever adds time, so the slow blocks are the
disturbed ones. Several networks are measured interleaved, block by block, so what load is
left hits all of them alike. Figures: README, "Budgets", and benchmarks/latency_stability.py.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class Latency:
    ms: float  # the estimate: median of the fastest blocks' per-call means
    spread: float  # (max - min) / ms over those blocks: how tightly the undisturbed blocks agree
    disturbance: float  # (median of all blocks - ms) / ms: how much other work slowed the rest
    blocks: int  # blocks measured
    calls: int  # forward calls per block

    def as_dict(self) -> dict:
        return {
            "ms": round(self.ms, 4),
            "spread": round(self.spread, 4),
            "disturbance": round(self.disturbance, 4),
            "blocks": self.blocks,
            "calls": self.calls,
        }


@dataclass(frozen=True)
class Timing:
    """How to time: CPU threads, pinning, warm-up, blocks and the share of fastest blocks kept."""

    threads: int = 1
    pin: bool = True
    warmup_ms: float = 200.0
    block_ms: float = 1.0  # short blocks: most fit between two interruptions by other processes
    repeats: int = 200
    quantile: float = 0.1
    realtime: bool = True  # SCHED_FIFO while timing, where permitted (see cpu_settings)


@contextmanager
def cpu_settings(threads: int, pin: bool, realtime: bool = False) -> Iterator[None]:
    """torch on ``threads`` threads, the process pinned to as many cores and, with ``realtime``,
    scheduled SCHED_FIFO (where the OS permits: root or CAP_SYS_NICE); all restored after.

    Real-time priority is what makes a shared machine measurable: at a load of 14 on 2 cores,
    two networks measured 17-38 ms over four repeats (5 ms on an idle core) without it and
    5.28-5.37 ms with it. The kernel keeps 5% of every second for other work (RT throttling),
    and only the calling thread is raised, which is the thread that computes at threads = 1.
    """
    saved_threads = torch.get_num_threads()
    can_pin = pin and hasattr(os, "sched_getaffinity")
    saved_cores = os.sched_getaffinity(0) if can_pin else None
    saved_policy = _raise_priority() if realtime else None
    torch.set_num_threads(threads)
    try:
        if saved_cores is not None and len(saved_cores) > threads:
            # Stay on the same cores for the whole measurement: no migration, warm caches.
            os.sched_setaffinity(0, sorted(saved_cores)[-threads:])
        yield
    finally:
        if saved_policy is not None:
            os.sched_setscheduler(0, saved_policy[0], saved_policy[1])
        torch.set_num_threads(saved_threads)
        if saved_cores is not None:
            os.sched_setaffinity(0, saved_cores)


def _raise_priority() -> tuple[int, os.sched_param] | None:
    """Switch to SCHED_FIFO; the previous (policy, param), or None where not permitted."""
    if not hasattr(os, "SCHED_FIFO"):
        return None
    try:
        saved = (os.sched_getscheduler(0), os.sched_getparam(0))
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))
        return saved
    except OSError:  # not permitted (no root / CAP_SYS_NICE): measure at normal priority
        return None


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _calls_per_block(run: Callable[[], object], device: torch.device, block_ms: float) -> int:
    """Forward calls that take about ``block_ms`` (at least one)."""
    calls = 1
    while True:
        _sync(device)
        start = time.perf_counter()
        for _ in range(calls):
            run()
        _sync(device)
        elapsed = (time.perf_counter() - start) * 1000
        if elapsed >= block_ms / 4 or calls >= 1 << 16:
            return max(1, round(calls * block_ms / max(elapsed, 1e-6)))
        calls *= 4


def _estimate(per_call_ms: list[float], quantile: float, calls: int) -> Latency:
    kept = sorted(per_call_ms)[: max(1, round(len(per_call_ms) * quantile))]
    ms = statistics.median(kept)
    disturbance = (statistics.median(per_call_ms) - ms) / ms
    return Latency(ms=ms, spread=(kept[-1] - kept[0]) / ms, disturbance=disturbance, blocks=len(per_call_ms), calls=calls)


@torch.inference_mode()
def measure_many(
    runs: Mapping[str, Callable[[], object]], timing: Timing = Timing(), device: torch.device = torch.device("cpu")
) -> dict[str, Latency]:
    """Latency of several zero-argument callables, measured interleaved block by block."""
    with cpu_settings(timing.threads, timing.pin, timing.realtime):
        deadline = time.perf_counter() + timing.warmup_ms / 1000
        while time.perf_counter() < deadline:
            for run in runs.values():
                run()
        calls = {name: _calls_per_block(run, device, timing.block_ms) for name, run in runs.items()}
        per_call: dict[str, list[float]] = {name: [] for name in runs}
        for _ in range(timing.repeats):
            for name, run in runs.items():
                _sync(device)
                start = time.perf_counter()
                for _ in range(calls[name]):
                    run()
                _sync(device)
                per_call[name].append((time.perf_counter() - start) * 1000 / calls[name])
    return {name: _estimate(per_call[name], timing.quantile, calls[name]) for name in runs}


def forward_of(
    model: nn.Module, in_channels: int, resolution: int, device: torch.device = torch.device("cpu")
) -> Callable[[], object]:
    """A batch-1 forward of ``model`` in eval mode, channels-last, on ``device``."""
    model = model.eval().to(device, memory_format=torch.channels_last)
    x = torch.randn(1, in_channels, resolution, resolution, device=device).to(memory_format=torch.channels_last)
    return lambda: model(x)


def network_latency(
    models: Mapping[str, tuple[nn.Module, int, int]], timing: Timing = Timing(), device: torch.device = torch.device("cpu")
) -> dict[str, Latency]:
    """Batch-1 latency of named (model, in_channels, resolution) triples, interleaved."""
    runs = {name: forward_of(model, cin, res, device) for name, (model, cin, res) in models.items()}
    return measure_many(runs, timing, device)


def cpu_latency_ms(model: nn.Module, in_channels: int, resolution: int, *, warmup: int = 5, runs: int = 20) -> float:
    """Single-thread CPU latency in ms (the old API: ``runs`` one-call blocks after ``warmup`` calls' worth)."""
    timing = Timing(threads=1, warmup_ms=float(warmup), repeats=runs)
    return network_latency({"model": (model, in_channels, resolution)}, timing)["model"].ms
