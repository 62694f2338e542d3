"""The latency table: measured per layer, predicting whole networks it never saw; a latency budget."""

from __future__ import annotations

import random
import statistics

import pytest
import torch

from slimnet.deploy.latency_model import _layer_module, _lookup, build_table, layers_of, predict_spec_ms
from slimnet.deploy.measure import Timing, forward_of, measure_many, network_latency
from slimnet.nn.network import Network
from slimnet.optimizers.budgets import Budget, Costs, extrapolate_within
from slimnet.optimizers.trajectory import CostRatio, TrajectoryPoint
from slimnet.space.spec import ArchSpec, uniform_spec

# A compute-bound little network (ResNet-18 at half width, 16 px), so that width shows in time.
REFERENCE = uniform_spec("resnet18", 0.5, resolution=16, num_classes=10, cifar=True, depth=(1, 1, 1, 1))
QUICK = Timing(warmup_ms=20.0, repeats=3)
NETWORKS = Timing(warmup_ms=50.0, repeats=30)


@pytest.fixture(scope="module")
def table():
    return build_table(REFERENCE, timing=QUICK, calibration_timing=NETWORKS)


def scaled(spec: ArchSpec, factors: dict[str, float]) -> ArchSpec:
    return spec.with_channels({u: max(2, round(c * factors[u])) for u, c in spec.channels.items()})


def test_table_covers_every_layer_of_the_network(table):
    names = [layer.name for layer in layers_of(REFERENCE.blueprint(), REFERENCE.resolution)]
    assert [row.name for row in table.layers] == names
    assert any(name.endswith(".shortcut") for name in names) and names[-1] == "classifier"
    assert table.threads == 1 and table.resolution == 16


def test_prediction_tracks_measurement_on_networks_the_fit_never_saw(table):
    rng = random.Random(0)
    units = list(REFERENCE.channels)
    specs = {"small": scaled(REFERENCE, {u: 0.3 for u in units}), "large": scaled(REFERENCE, {u: 1.4 for u in units})}
    for i in range(3):  # non-uniform: every unit its own width
        specs[f"mixed{i}"] = scaled(REFERENCE, {u: rng.uniform(0.3, 1.3) for u in units})
    measured = network_latency({n: (Network(s.blueprint()), s.in_channels, s.resolution) for n, s in specs.items()}, NETWORKS)
    predicted = {n: predict_spec_ms(table, s) for n, s in specs.items()}
    # A much larger network measures much slower, and the table predicts by how much. How much
    # is the machine's (large/small measured 3.2-3.6 on an Intel Xeon, with prediction 2.8-3.3):
    # the prediction is held to the measured ratio, not to a fixed one.
    measured_ratio = measured["large"].ms / measured["small"].ms
    predicted_ratio = predicted["large"] / predicted["small"]
    assert measured_ratio > 2, {n: m.ms for n, m in measured.items()}
    assert 1 / 1.5 <= predicted_ratio / measured_ratio <= 1.5, (predicted, {n: m.ms for n, m in measured.items()})
    # The networks are measured interleaved, so load on a shared machine slows them alike, but the
    # table was timed earlier: compare each prediction's ratio to measurement with the others'
    # (the shape), and the common factor loosely (a 2-core machine shared with other work).
    # The smallest network (about 0.5 ms) is mostly per-call overhead, which on this VM swings by
    # up to half between processes (0.44 and 0.49 seen in full-suite runs, 0.08 alone): the median
    # holds the shape, the maximum only catches a prediction that is off altogether.
    ratios = {n: predicted[n] / measured[n].ms for n in specs}
    common = statistics.median(ratios.values())
    shape_errors = [abs(r / common - 1) for r in ratios.values()]
    assert statistics.median(shape_errors) <= 0.15 and max(shape_errors) <= 0.75, (
        predicted,
        {n: m.ms for n, m in measured.items()},
    )
    assert 0.5 < common < 2.0, (predicted, {n: m.ms for n, m in measured.items()})


def test_layer_lookup_between_grid_widths_matches_the_layer_measured_alone(table):
    blueprint = REFERENCE.blueprint()
    layer = next(
        x
        for x in layers_of(blueprint, REFERENCE.resolution)
        if x.conv is not None and x.conv.kernel == 3 and x.in_unit != "input"
    )
    row = next(r for r in table.layers if r.name == layer.name)
    # Exactly on the grid, the lookup is the measured entry.
    assert _lookup(row, row.cin[-1], row.cout[-1]) == row.ms[-1][-1]
    cin, cout = (row.cin[-2] + row.cin[-1]) // 2, (row.cout[-3] + row.cout[-2]) // 2
    runs = {
        "between": forward_of(_layer_module(layer, cin, cout, 10), cin, layer.size),
        "corner": forward_of(_layer_module(layer, row.cin[-1], row.cout[-1], 10), row.cin[-1], layer.size),
    }
    measured = {n: latency.ms for n, latency in measure_many(runs, NETWORKS).items()}
    # Relative to the widest grid point measured beside it (load slows both alike): the lookup
    # between grid widths is as much cheaper than the corner as the layer measured now.
    predicted_ratio = _lookup(row, cin, cout) / row.ms[-1][-1]
    measured_ratio = measured["between"] / measured["corner"]
    assert predicted_ratio < 0.9 and abs(predicted_ratio / measured_ratio - 1) <= 0.3, (predicted_ratio, measured_ratio)
    # The two axes are not interchangeable: more input channels with fewer output ones costs otherwise.
    assert _lookup(row, row.cin[-1], row.cout[0]) < _lookup(row, row.cin[-1], row.cout[-1])
    assert _lookup(row, row.cin[0], row.cout[-1]) < _lookup(row, row.cin[-1], row.cout[-1])


def uniform_points(widths: list[float]) -> list[TrajectoryPoint]:
    base = REFERENCE.cost()
    points = []
    for step, w in enumerate(widths):
        spec = scaled(REFERENCE, {u: w for u in REFERENCE.channels})
        c = spec.cost()
        points.append(
            TrajectoryPoint(
                step=step,
                slimmed=None,
                flops=c.flops,
                params=c.params,
                memory=c.memory,
                accuracy=0.0,
                loss=0.0,
                evaluations=0,
                ratio=CostRatio(flops=c.flops / base.flops, params=c.params / base.params),
                channels=spec.channels,
            )
        )
    return points


def test_latency_budget_binds_over_a_loose_flops_budget(table):
    points = uniform_points([1.5, 1.2, 1.0, 0.8, 0.6, 0.4, 0.25])
    full_ms = predict_spec_ms(table, REFERENCE)
    target = 0.8 * full_ms
    budgets = [Budget("latency", target), Budget("flops", REFERENCE.cost().flops)]
    result = extrapolate_within(
        points,
        budgets,
        projected_uniform=REFERENCE,
        full_uniform=REFERENCE,
        costs=Costs(table),
        stacking="average",
        divisor=2,
        tolerance=0.01,
    )
    assert result["binding"] == "latency"
    optimized = result["optimized"]
    assert predict_spec_ms(table, optimized) <= target and optimized.cost().flops <= REFERENCE.cost().flops
    # Without projection the point is used as it is: the widest one predicted within the budget.
    widest_within = next(p for p in points if predict_spec_ms(table, REFERENCE.with_channels(p.channels)) <= target)
    assert result["selected_step"] == widest_within.step
    # The baseline is matched on predicted latency (within the tolerance, or as near as widths allow).
    assert abs(predict_spec_ms(table, result["uniform"]) / predict_spec_ms(table, optimized) - 1) <= 0.01


def test_measurement_restores_threads_and_affinity():
    import os

    threads, cores, policy = torch.get_num_threads(), os.sched_getaffinity(0), os.sched_getscheduler(0)
    model = Network(REFERENCE.blueprint())
    latency = network_latency({"net": (model, 3, 16)}, Timing(warmup_ms=5.0, repeats=5))["net"]
    assert latency.ms > 0 and latency.blocks == 5 and latency.spread >= 0
    assert torch.get_num_threads() == threads and os.sched_getaffinity(0) == cores and os.sched_getscheduler(0) == policy
