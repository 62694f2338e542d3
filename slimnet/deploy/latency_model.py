"""A per-layer latency table and the latency it predicts for any channel configuration.

As in MnasNet, FBNet and ProxylessNAS: every layer of the full network (conv + BN +
activation, a projection shortcut, the pooled classifier) is timed on its own, at its own
input resolution, on a grid of input and output widths (fractions of the reference network's
channels). A configuration's latency is the sum of its layers' times, each interpolated
(piecewise linear; linear beyond the grid) between the measured widths, then mapped through
``sum + overhead``: the overhead is the median of (measured - summed) over uniform networks
measured end to
end, so the residual adds, the pooling and the per-call cost of Python that no single layer
carries are counted too.
"""

from __future__ import annotations

import bisect
import platform
import statistics
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from pydantic import BaseModel, ConfigDict
from torch import nn

from slimnet import atomic
from slimnet.console.errors import SlimnetError
from slimnet.deploy.measure import Timing, forward_of, measure_many
from slimnet.nn.network import ConvBNAct, LayerFactory, Network
from slimnet.space.channels import Blueprint, Conv
from slimnet.space.flops import conv_out
from slimnet.space.spec import ArchSpec

# Widths (fractions of the reference network's channels) each layer is timed at; the search's
# networks lie between 0.1x and 1.5x, and prediction extrapolates linearly outside.
GRID = (0.125, 0.25, 0.5, 0.75, 1.0, 1.5)
CALIBRATION_WIDTHS = (0.25, 0.5, 0.75, 1.0, 1.5)
ROUND = 5  # decimals of ms kept in the table (10 ns: far below what repeats agree on)


class TableLayer(BaseModel):
    """One layer's measured times: ``ms[i][j]`` at ``cin[i]`` input and ``cout[j]`` output channels
    (depthwise layers and the classifier have one axis: ``cin`` is empty, ``ms[0][j]``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str
    in_unit: str
    out_unit: str
    cin: list[int]
    cout: list[int]
    ms: list[list[float]]


class LatencyTable(BaseModel):
    """Measured once per (device, network, resolution); kept as the `latency` stage's output."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    device: str  # "cpu" or "cuda"
    device_name: str  # the processor or GPU it was measured on
    threads: int
    torch: str
    arch: str
    depth: tuple[int, ...]
    resolution: int
    in_channels: int
    num_classes: int
    layers: list[TableLayer]
    overhead_ms: float
    calibration: list[dict]  # per uniform width: measured and summed-layer ms (the fit's data)

    def save(self, path: Path) -> None:
        atomic.write_text(Path(path), self.model_dump_json(indent=1) + "\n")

    @classmethod
    def load(cls, path: Path) -> "LatencyTable":
        path = Path(path)
        if not path.is_file():
            raise SlimnetError(f"{path} not found: run `dvc repro latency` first")
        return cls.model_validate_json(path.read_text())


# --- the layers of a network --------------------------------------------------------------


@dataclass(frozen=True)
class Layer:
    """A timed layer: a conv (+BN, +act) with its input size, or the pooled classifier (conv None)."""

    name: str
    conv: Conv | None
    size: int  # input height = width

    @property
    def depthwise(self) -> bool:
        return self.conv is not None and self.conv.depthwise

    @property
    def in_unit(self) -> str:
        return self.conv.in_unit if self.conv is not None else ""

    @property
    def out_unit(self) -> str:
        return self.conv.out_unit if self.conv is not None else ""


def layers_of(blueprint: Blueprint, resolution: int) -> Iterator[Layer]:
    """Every timed layer in forward order, with its input resolution (as flops.cost walks them)."""
    size = resolution
    for block in blueprint.blocks:
        block_in = size
        for conv in block.convs:
            yield Layer(conv.name, conv, size)
            size = conv_out(size, conv.kernel, conv.stride)
        if block.residual == "project":
            shortcut = Conv(f"{block.name}.shortcut", block.in_unit, block.out_unit, 1, block.stride, False, None)
            yield Layer(shortcut.name, shortcut, block_in)
        if block.pool:
            size = conv_out(size, 3, 2)
    yield Layer("classifier", None, size)


def _layer_module(layer: Layer, cin: int, cout: int, num_classes: int) -> nn.Module:
    if layer.conv is None:
        return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cout, num_classes))
    units = {layer.conv.in_unit: cin, layer.conv.out_unit: cout}
    return ConvBNAct(layer.conv, LayerFactory(units, slimmable=False))


def _grid(channels: int) -> list[int]:
    return sorted({max(1, round(f * channels)) for f in GRID})


# --- measuring -----------------------------------------------------------------------------


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _measure_layer(
    layer: Layer, cins: list[int], couts: list[int], in_channels: int, num_classes: int, timing: Timing, device: torch.device
) -> list[list[float]]:
    """ms[i][j] for every grid point, all timed interleaved (a burst of load hits them alike)."""
    runs = {}
    for i, cin in enumerate(cins):
        for j, cout in enumerate(couts):
            in_width = cout if (layer.depthwise or layer.conv is None) else cin
            module = _layer_module(layer, in_width, cout, num_classes)
            runs[(i, j)] = forward_of(module, in_width, layer.size, device)
    times = measure_many(runs, timing, device)
    return [[round(times[(i, j)].ms, ROUND) for j in range(len(couts))] for i in range(len(cins))]


def build_table(
    reference: ArchSpec,
    *,
    device: torch.device = torch.device("cpu"),
    timing: Timing = Timing(repeats=30),
    calibration_timing: Timing = Timing(),
) -> LatencyTable:
    """Time every layer of ``reference`` on the width grid, then measure the overhead end to end."""
    blueprint = reference.blueprint()
    widths = dict(reference.channels)
    widths["input"] = reference.in_channels
    cache: dict[tuple, list[list[float]]] = {}
    rows = []
    torch.manual_seed(0)
    for layer in layers_of(blueprint, reference.resolution):
        if layer.conv is None:
            cins, couts = [], _grid(widths[blueprint.last_unit])
            key: tuple = ("classifier", layer.size, tuple(couts))
        else:
            couts = _grid(widths[layer.out_unit])
            cins = [] if layer.depthwise else ([widths["input"]] if layer.in_unit == "input" else _grid(widths[layer.in_unit]))
            key = (layer.conv.kernel, layer.conv.stride, layer.depthwise, layer.conv.act, layer.size, tuple(cins), tuple(couts))
        if key not in cache:
            cache[key] = _measure_layer(layer, cins or [0], couts, reference.in_channels, reference.num_classes, timing, device)
        rows.append(
            TableLayer(
                name=layer.name,
                in_unit=layer.in_unit,
                out_unit=layer.out_unit or blueprint.last_unit,
                cin=cins,
                cout=couts,
                ms=cache[key],
            )
        )
    table = LatencyTable(
        device=device.type,
        device_name=device_name(device),
        threads=timing.threads,
        torch=torch.__version__.split("+")[0],
        arch=reference.arch,
        depth=tuple(reference.depth),
        resolution=reference.resolution,
        in_channels=reference.in_channels,
        num_classes=reference.num_classes,
        layers=rows,
        overhead_ms=0.0,
        calibration=[],
    )
    return calibrate(table, reference, device=device, timing=calibration_timing)


def calibrate(
    table: LatencyTable, reference: ArchSpec, *, device: torch.device = torch.device("cpu"), timing: Timing = Timing()
) -> LatencyTable:
    """The fixed overhead: median of (measured - summed layer times) over uniform networks.

    Not a fitted slope as well: the sums of five uniform networks lie close together (a small
    network's time is mostly per-layer cost), so a slope fitted to them swung from 1.3 to 10
    with the load on a shared machine; a median offset stays put."""
    specs = {w: _uniform_like(reference, w) for w in CALIBRATION_WIDTHS}
    runs = {w: forward_of(Network(s.blueprint()), s.in_channels, s.resolution, device) for w, s in specs.items()}
    measured = {w: lat.ms for w, lat in measure_many(runs, timing, device).items()}
    summed = {w: layer_sum_ms(table, s.blueprint(), s.channels, s.resolution) for w, s in specs.items()}
    overhead = statistics.median(measured[w] - summed[w] for w in specs)
    calibration = [
        {
            "width": w,
            "measured_ms": round(measured[w], ROUND),
            "layer_sum_ms": round(summed[w], ROUND),
            "predicted_ms": round(summed[w] + overhead, ROUND),  # the fit's residual shows the table's quality
        }
        for w in specs
    ]
    return table.model_copy(update={"overhead_ms": round(overhead, ROUND), "calibration": calibration})


def _uniform_like(reference: ArchSpec, width: float) -> ArchSpec:
    channels = {u: max(1, round(width * c)) for u, c in reference.channels.items()}
    return reference.with_channels(channels, note=f"calibration {width:g}x")


# --- predicting ----------------------------------------------------------------------------


def _interp(xs: Sequence[int], ys: Sequence[float], x: float) -> float:
    """Piecewise-linear through (xs, ys), linear beyond the ends."""
    if len(xs) == 1:
        return ys[0]
    i = min(max(bisect.bisect_left(xs, x), 1), len(xs) - 1)
    x0, x1, y0, y1 = xs[i - 1], xs[i], ys[i - 1], ys[i]
    return y0 + (y1 - y0) * (x - x0) / (x1 - x0)


def _lookup(row: TableLayer, cin: int, cout: int) -> float:
    if not row.cin or len(row.ms) == 1:
        return max(0.0, _interp(row.cout, row.ms[0], cout))
    by_cin = [_interp(row.cout, line, cout) for line in row.ms]
    return max(0.0, _interp(row.cin, by_cin, cin))


def layer_sum_ms(table: LatencyTable, blueprint: Blueprint, channels: dict[str, int], resolution: int) -> float:
    """The sum of the table's per-layer times for ``channels`` (no overhead)."""
    if blueprint.arch != table.arch or tuple(blueprint.depth) != tuple(table.depth) or resolution != table.resolution:
        raise SlimnetError(
            f"the latency table is for {table.arch} at depth {list(table.depth)} and {table.resolution} px, "
            f"not {blueprint.arch} at depth {list(blueprint.depth)} and {resolution} px: run `dvc repro latency`"
        )
    widths = dict(channels)
    widths["input"] = blueprint.in_channels
    total = 0.0
    rows = {row.name: row for row in table.layers}
    for layer in layers_of(blueprint, resolution):
        row = rows.get(layer.name)
        if row is None:
            raise SlimnetError(f"the latency table has no layer {layer.name}: run `dvc repro latency`")
        out_unit = layer.out_unit or blueprint.last_unit
        total += _lookup(row, widths.get(layer.in_unit, 0), widths[out_unit])
    return total


def predict_ms(table: LatencyTable, blueprint: Blueprint, channels: dict[str, int], resolution: int) -> float:
    """Predicted batch-1 latency in ms of ``channels`` on the table's device."""
    return layer_sum_ms(table, blueprint, channels, resolution) + table.overhead_ms


def predict_spec_ms(table: LatencyTable, spec: ArchSpec) -> float:
    return predict_ms(table, spec.blueprint(), spec.channels, spec.resolution)


def current_device_matches(table: LatencyTable, device: torch.device) -> bool:
    """Whether this machine is the one the table was measured on (same processor or GPU name)."""
    return table.device == device.type and table.device_name == device_name(device)
