"""The latency table against the wall clock, on networks it never saw (CPU, one thread).

    python benchmarks/latency_unseen.py [--rounds 3]

Measures a table for ResNet-18 at half width, 16 px (CIFAR stem, one block a stage), then, each
round, measures five networks end to end, interleaved: every unit at 0.3x, every unit at 1.4x,
and three with every unit at its own width between 0.3x and 1.3x. Prints, per round:
- large/small: predicted over measured ratio (1 = the table scales as the machine does);
- shape: the median and largest |prediction/measurement relative to their median - 1|;
- common: the median prediction/measurement (load between the table and now moves it);
- lookup: a 3x3 layer between grid widths against the same layer measured beside the grid corner.
The suite checks the table's arithmetic on an exact clock (tests/test_latency.py); this is the
measurement on real hardware, which moves with what else the machine runs. Figures: README.md here.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from slimnet.deploy.latency_model import _layer_module, _lookup, build_table, layers_of, predict_spec_ms  # noqa: E402
from slimnet.deploy.measure import Timing, forward_of, measure_many, network_latency  # noqa: E402
from slimnet.nn.network import Network  # noqa: E402
from tests.test_latency import REFERENCE, scaled  # noqa: E402  (the network the suite checks on its exact clock)

NETWORKS = Timing(warmup_ms=50.0, repeats=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    table = build_table(REFERENCE, timing=Timing(warmup_ms=20.0, repeats=3), calibration_timing=NETWORKS)
    rng = random.Random(0)
    units = list(REFERENCE.channels)
    specs = {"small": scaled(REFERENCE, {u: 0.3 for u in units}), "large": scaled(REFERENCE, {u: 1.4 for u in units})}
    for i in range(3):
        specs[f"mixed{i}"] = scaled(REFERENCE, {u: rng.uniform(0.3, 1.3) for u in units})
    predicted = {n: predict_spec_ms(table, s) for n, s in specs.items()}

    layer = next(
        x for x in layers_of(REFERENCE.blueprint(), 16) if x.conv is not None and x.conv.kernel == 3 and x.in_unit != "input"
    )
    row = next(r for r in table.layers if r.name == layer.name)
    cin, cout = (row.cin[-2] + row.cin[-1]) // 2, (row.cout[-3] + row.cout[-2]) // 2
    lookup_ratio = _lookup(row, cin, cout) / row.ms[-1][-1]

    print(f"table: overhead {table.overhead_ms:.3f} ms; predicted ms " + ", ".join(f"{n} {v:.3f}" for n, v in predicted.items()))
    for round_ in range(args.rounds):
        models = {n: (Network(s.blueprint()), s.in_channels, s.resolution) for n, s in specs.items()}
        measured = {n: lat.ms for n, lat in network_latency(models, NETWORKS).items()}
        ratios = {n: predicted[n] / measured[n] for n in specs}
        common = statistics.median(ratios.values())
        shape = [abs(r / common - 1) for r in ratios.values()]
        scale = (predicted["large"] / predicted["small"]) / (measured["large"] / measured["small"])
        runs = {
            "between": forward_of(_layer_module(layer, cin, cout, 10), cin, layer.size),
            "corner": forward_of(_layer_module(layer, row.cin[-1], row.cout[-1], 10), row.cin[-1], layer.size),
        }
        layer_ms = {n: lat.ms for n, lat in measure_many(runs, NETWORKS).items()}
        lookup = lookup_ratio / (layer_ms["between"] / layer_ms["corner"])
        print(
            f"round {round_ + 1}: large/small measured {measured['large'] / measured['small']:.2f}, "
            f"predicted/measured {scale:.3f}; shape median {statistics.median(shape):.3f} max {max(shape):.3f}; "
            f"common {common:.3f}; lookup predicted/measured {lookup:.3f}"
        )


if __name__ == "__main__":
    main()
