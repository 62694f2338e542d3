"""Latency table's prediction against end-to-end measurement, over the search trajectory's points.

    python benchmarks/latency_predictor.py [--points 16] [--table stages/latency/table.json] [--rounds 2]

Takes the default pipeline's committed search trajectory (stages/search/trajectory.json) and
full network (stages/extrapolate/reference.json), carries ``--points`` evenly spaced trajectory
points to the full network (widths stacked to the full depth, as extrapolate does, at k = 1),
predicts each one's batch-1 latency from the table (measured here unless ``--table`` names
one), and measures each end to end ``--rounds`` times, all networks interleaved. Prints the
per-point error, the median and largest absolute error (issue 10's goal: median <= 10% on
this CPU) and the round-to-round spread of the measurement itself.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from slimnet.deploy.latency_model import LatencyTable, build_table, predict_spec_ms
from slimnet.deploy.measure import Timing, network_latency
from slimnet.nn.network import Network
from slimnet.optimizers.budgets import _full_channels
from slimnet.optimizers.trajectory import Trajectory
from slimnet.space.spec import load_spec


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--table", type=Path, default=None, help="a table to load instead of measuring one")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--stacking", default="average")
    args = parser.parse_args()

    trajectory = Trajectory.load(Path("stages/search/trajectory.json"))
    full = load_spec(Path("stages/extrapolate/reference.json"))
    if args.table is not None:
        table = LatencyTable.load(args.table)
    else:
        start = time.perf_counter()
        table = build_table(
            full, timing=Timing(threads=args.threads, warmup_ms=50.0, repeats=30), calibration_timing=Timing(threads=args.threads)
        )
        print(f"table measured in {time.perf_counter() - start:.0f} s: overhead {table.overhead_ms} ms")
    points = trajectory.points
    chosen = sorted({round(i * (len(points) - 1) / max(1, args.points - 1)) for i in range(args.points)})
    specs = {
        points[i].step: full.with_channels(_full_channels(points[i], trajectory.reference, full, args.stacking, 8))
        for i in chosen
    }
    predicted = {step: predict_spec_ms(table, spec) for step, spec in specs.items()}
    rounds: dict[int, list[float]] = {step: [] for step in specs}
    for _ in range(args.rounds):
        models = {step: (Network(spec.blueprint()), spec.in_channels, spec.resolution) for step, spec in specs.items()}
        for step, latency in network_latency(models, Timing(threads=args.threads)).items():
            rounds[step].append(latency.ms)
    errors, spreads = [], []
    print(f"{'step':>5} {'MFLOPs':>7} {'predicted':>9} {'measured':>9} {'error':>7} {'repeat spread':>13}")
    for step, spec in specs.items():
        measured = statistics.median(rounds[step])
        error = predicted[step] / measured - 1
        spread = (max(rounds[step]) - min(rounds[step])) / measured
        errors.append(abs(error))
        spreads.append(spread)
        print(f"{step:5d} {spec.cost().flops / 1e6:7.2f} {predicted[step]:9.3f} {measured:9.3f} {error:+7.1%} {spread:13.1%}")
    print(
        f"median |error| {statistics.median(errors):.1%}, largest {max(errors):.1%} over {len(specs)} points; "
        f"measurement repeat spread median {statistics.median(spreads):.1%}, largest {max(spreads):.1%} ({args.rounds} rounds)"
    )


if __name__ == "__main__":
    main()
