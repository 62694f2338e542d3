"""Repeat-to-repeat agreement of batch-1 latency: the old measurement against slimnet.deploy.measure.

    python benchmarks/latency_stability.py [--repeats 6] [--threads 1] [--no-realtime]

Measures the default pipeline's two networks (stages/extrapolate/{optimized,uniform}.json) and a
third, 1.5x wider uniform network, ``--repeats`` times each way, alternating the ways so load
on the machine hits both alike. For each way it prints every repeat's figure, the
repeat-to-repeat spread ((max - min) / median over repeats; issue 11's goal is <= 5%), the
within-measurement spread the new way reports, and how often the two default networks come
out in the same order.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from slimnet.deploy.measure import Timing, forward_of, measure_many
from slimnet.nn.network import Network
from slimnet.space.spec import load_spec, uniform_spec


@torch.no_grad()
def old_way(run, warmup: int = 5, runs: int = 20) -> float:
    """slimnet.deploy.measure before issue 11: median of 20 single calls after 5 warm-ups, one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for _ in range(warmup):
            run()
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            run()
            times.append(time.perf_counter() - start)
        return 1000 * statistics.median(times)
    finally:
        torch.set_num_threads(threads)


def spread(values: list[float]) -> float:
    return (max(values) - min(values)) / statistics.median(values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=6)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-realtime", action="store_true", help="measure the new way at normal priority")
    args = parser.parse_args()
    torch.manual_seed(0)
    specs = {name: load_spec(f"stages/extrapolate/{name}.json") for name in ("optimized", "uniform")}
    ref = specs["uniform"]
    specs["wide"] = uniform_spec(
        ref.arch, 0.5, resolution=ref.resolution, num_classes=ref.num_classes, in_channels=ref.in_channels, cifar=ref.cifar
    )
    runs = {name: forward_of(Network(spec.blueprint()), spec.in_channels, spec.resolution) for name, spec in specs.items()}
    timing = Timing(threads=args.threads, realtime=not args.no_realtime)
    old: dict[str, list[float]] = {name: [] for name in runs}
    new: dict[str, list[float]] = {name: [] for name in runs}
    inner: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.repeats):
        for name, run in runs.items():
            old[name].append(old_way(run))
        for name, latency in measure_many(runs, timing).items():
            new[name].append(latency.ms)
            inner[name].append(latency.spread)
    print(f"{args.repeats} repeats, {args.threads} thread(s); spread = (max - min) / median over repeats")
    for label, figures in (("old (median of 20 calls)", old), ("new (slimnet.deploy.measure)", new)):
        print(label)
        for name, values in figures.items():
            print(
                f"  {name:9s} median {statistics.median(values):7.3f} ms  spread {spread(values):6.1%}  ["
                + ", ".join(f"{v:.3f}" for v in values)
                + "]"
            )
        same = sum(
            (o < u) == (statistics.median(figures["optimized"]) < statistics.median(figures["uniform"]))
            for o, u in zip(figures["optimized"], figures["uniform"])
        )
        ratios = [o / u for o, u in zip(figures["optimized"], figures["uniform"])]
        print(
            f"  optimized/uniform ratio {statistics.median(ratios):.3f} spread {spread(ratios):.1%}; same order in {same}/{args.repeats} repeats"
        )
    print(
        "new way, within-measurement spread (median over repeats): "
        + ", ".join(f"{n} {statistics.median(v):.1%}" for n, v in inner.items())
    )


if __name__ == "__main__":
    main()
