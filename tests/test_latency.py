"""The latency table: measured per layer, predicting whole networks it never saw; a latency budget."""

from __future__ import annotations

import random

import pytest
import torch

from slimnet.deploy import latency_model
from slimnet.deploy.latency_model import _layer_module, _lookup, build_table, layers_of, predict_spec_ms
from slimnet.deploy.measure import Latency, Timing, forward_of, network_latency
from slimnet.nn.network import Network
from slimnet.optimizers.budgets import Budget, Costs, extrapolate_within
from slimnet.optimizers.trajectory import CostRatio, TrajectoryPoint
from slimnet.space.spec import ArchSpec, uniform_spec

# ResNet-18 at half width, 16 px: plain convolutions, projection shortcuts, a classifier.
REFERENCE = uniform_spec("resnet18", 0.5, resolution=16, num_classes=10, cifar=True, depth=(1, 1, 1, 1))

# A clock that charges each forward its convolutions' and classifier's multiply-adds and a constant
# per module and per call, so the table's arithmetic is checked exactly, whatever the machine's load.
# (Nothing per element: the table leaves a residual block's add and activation to the overhead.) Wall-clock accuracy on real hardware is a measurement:
# benchmarks/latency_unseen.py (with the figures in benchmarks/README.md).
MS_PER_MAC = 1e-6
MS_PER_MODULE = 2e-3  # per-module dispatch
MS_PER_CALL = 0.05  # per-forward overhead


def clock_ms(run) -> float:
    charged = {"ms": MS_PER_CALL}

    def charge(module: torch.nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        if list(module.children()):
            return  # containers: their leaves pay
        charged["ms"] += MS_PER_MODULE
        if isinstance(module, torch.nn.Conv2d):
            charged["ms"] += MS_PER_MAC * output.numel() * module.weight.shape[1] * module.weight[0, 0].numel()
        elif isinstance(module, torch.nn.Linear):
            charged["ms"] += MS_PER_MAC * output.numel() * module.in_features

    handle = torch.nn.modules.module.register_module_forward_hook(charge)
    try:
        with torch.no_grad():
            run()
    finally:
        handle.remove()
    return charged["ms"]


def measure_by_clock(runs, timing=None, device=None):
    return {name: Latency(ms=clock_ms(run), spread=0.0, disturbance=0.0, blocks=1, calls=1) for name, run in runs.items()}


@pytest.fixture(scope="module")
def table():
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(latency_model, "measure_many", measure_by_clock)
        return build_table(REFERENCE)


def scaled(spec: ArchSpec, factors: dict[str, float]) -> ArchSpec:
    return spec.with_channels({u: max(2, round(c * factors[u])) for u, c in spec.channels.items()})


def test_table_covers_every_layer_of_the_network(table):
    names = [layer.name for layer in layers_of(REFERENCE.blueprint(), REFERENCE.resolution)]
    assert [row.name for row in table.layers] == names
    assert any(name.endswith(".shortcut") for name in names) and names[-1] == "classifier"
    assert table.threads == 1 and table.resolution == 16


def test_prediction_matches_the_clock_on_networks_the_table_never_saw(table):
    rng = random.Random(0)
    units = list(REFERENCE.channels)
    specs = {"small": scaled(REFERENCE, {u: 0.3 for u in units}), "large": scaled(REFERENCE, {u: 1.4 for u in units})}
    for i in range(3):  # non-uniform: every unit its own width, between grid points
        specs[f"mixed{i}"] = scaled(REFERENCE, {u: rng.uniform(0.3, 1.3) for u in units})
    clocked = {n: clock_ms(forward_of(Network(s.blueprint()), s.in_channels, s.resolution)) for n, s in specs.items()}
    predicted = {n: predict_spec_ms(table, s) for n, s in specs.items()}
    # The clock's cost is bilinear in a layer's input and output widths, which is what the table
    # interpolates, and its per-forward overhead is what the calibration finds: a layer left out,
    # counted twice or looked up on the wrong units shows as an error of several percent.
    assert clocked["large"] > 3 * clocked["small"]
    for name in specs:
        assert predicted[name] == pytest.approx(clocked[name], rel=1e-3), (name, predicted, clocked)


def test_calibration_finds_the_per_forward_overhead(table):
    # Each layer timed alone pays the per-forward overhead once; a network pays it once in all.
    # (Within a few modules' charge: the blocks' post-add activations are not in any layer.)
    layers = sum(1 for _ in layers_of(REFERENCE.blueprint(), REFERENCE.resolution))
    assert table.overhead_ms == pytest.approx(MS_PER_CALL * (1 - layers), abs=5 * MS_PER_MODULE)
    for row in table.calibration:
        assert row["predicted_ms"] == pytest.approx(row["measured_ms"], rel=1e-3)


def test_layer_lookup_between_grid_widths_matches_the_layer_clocked_alone(table):
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
    between = clock_ms(forward_of(_layer_module(layer, cin, cout, 10), cin, layer.size))
    assert _lookup(row, cin, cout) == pytest.approx(between, rel=1e-3)
    assert _lookup(row, cin, cout) < 0.9 * row.ms[-1][-1]
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
