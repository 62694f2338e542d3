"""CPU cost of the route around torch 2.14.1's oneDNN bug (slimnet.nn.safe_conv) against the
other workaround, oneDNN switched off globally (``torch.backends.mkldnn.enabled = False``).

    python benchmarks/conv_fix_cost.py [--steps 3] [--threads 1] [--batch 128] [--depth 0.5]

Times ResNet-18 supernet sandwich steps (narrow widths, where shortcuts take the route, and
normal widths, where nothing does) and plain ResNet-18 training steps, at 16 and 32 px, plus
the routed layer alone. Modes alternate step by step; medians. A ratio is mkldnn-off time
over route time: above 1 the route is the cheaper workaround.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from slimnet.nn.network import Network
from slimnet.nn.safe_conv import pointwise_conv
from slimnet.space.channels import Blueprint, ChannelSpace
from slimnet.space.models import scaled_depth
from slimnet.space.spec import uniform_spec
from slimnet.training.sandwich import build_space, build_supernet, sandwich_step

# (name, width of the projected ResNet-18 the supernet spans 0.15x..1.5x of): 0.245 is the
# default projection (model width 0.35 x transfer width 0.7); 1.0 keeps every unit >= 8 channels.
WIDTHS = (("narrow", 0.245), ("normal", 1.0))
MODES = ("route", "mkldnn off")


def mode_context(mode: str) -> contextlib.AbstractContextManager:
    return torch.backends.mkldnn.flags(enabled=False) if mode == "mkldnn off" else contextlib.nullcontext()


def time_modes(step: Callable[[int], None], warmup: int, steps: int) -> dict[str, float]:
    """Median seconds of ``step(i)`` per mode, the modes interleaved so that load drifts hit both."""
    times: dict[str, list[float]] = {mode: [] for mode in MODES}
    for i in range(warmup + steps):
        for mode in MODES:
            with mode_context(mode):
                started = time.perf_counter()
                step(i)
                if i >= warmup:
                    times[mode].append(time.perf_counter() - started)
    return {mode: statistics.median(values) for mode, values in times.items()}


def routed_shortcuts(blueprint: Blueprint, config: dict[str, int]) -> int:
    """Projection shortcuts the route takes at this configuration (1x1, stride > 1, < 8 inputs)."""
    return sum(b.residual == "project" and b.stride > 1 and config[b.in_unit] < 8 for b in blueprint.blocks)


def space_for(width: float, resolution: int, depth: float) -> ChannelSpace:
    reference = uniform_spec(
        "resnet18", width, resolution=resolution, num_classes=10, cifar=True, depth=scaled_depth("resnet18", depth), divisor=2
    )
    return build_space(reference, min_width=0.15, max_width=1.5, groups=10, divisor=2)


def images(batch: int, resolution: int) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.randn(batch, 3, resolution, resolution).contiguous(memory_format=torch.channels_last)
    return x, torch.randint(0, 10, (batch,))


def supernet_step(space: ChannelSpace, batch: int, resolution: int) -> Callable[[int], None]:
    network = build_supernet(space).to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(network.parameters(), lr=0.01, momentum=0.9)
    x, y = images(batch, resolution)

    def step(i: int) -> None:
        # The same configurations for every mode at step i.
        generator = torch.Generator().manual_seed(i)
        sandwich_step(network, space, optimizer, x, y, samples=2, label_smoothing=0.1, generator=generator)

    return step


def plain_step(blueprint: Blueprint, config: dict[str, int], batch: int, resolution: int) -> Callable[[int], None]:
    network = Network(blueprint, config).to(memory_format=torch.channels_last).train()
    optimizer = torch.optim.SGD(network.parameters(), lr=0.01, momentum=0.9)
    x, y = images(batch, resolution)

    def step(i: int) -> None:
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(network(x), y).backward()
        optimizer.step()

    return step


def layer_step(cin: int, batch: int, resolution: int) -> dict[str, float]:
    """The shortcut alone (1x1, stride 2, cin -> 2 cin), forward + backward, milliseconds."""
    weight = torch.randn(2 * cin, cin, 1, 1, requires_grad=True)
    x = torch.randn(batch, cin, resolution, resolution).contiguous(memory_format=torch.channels_last).requires_grad_()
    nchw = x.detach().contiguous().requires_grad_()
    cases = {
        "route": lambda: pointwise_conv(x, weight, None, 2),
        "mkldnn off": lambda: F.conv2d(x, weight, None, 2),
        "oneDNN NCHW": lambda: F.conv2d(nchw, weight, None, 2),
    }
    result = {}
    for name, forward in cases.items():
        with mode_context(name):
            for _ in range(3):
                forward().sum().backward()
            started = time.perf_counter()
            for _ in range(20):
                forward().sum().backward()
            result[name] = 1000 * (time.perf_counter() - started) / 20
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3, help="timed steps per mode (after one warm-up)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--depth", type=float, default=0.5, help="ResNet-18 depth multiplier (the default projection)")
    parser.add_argument("--resolutions", type=int, nargs="+", default=[16, 32])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(
        f"torch {torch.__version__}, {args.threads} thread(s), batch {args.batch}, "
        f"ResNet-18 depth {scaled_depth('resnet18', args.depth)}, CIFAR stem; median of {args.steps} steps"
    )
    print(f"{'case':<34}{'route s':>10}{'mkldnn off s':>14}{'ratio':>8}  routed shortcuts (min config)")
    for resolution in args.resolutions:
        for name, width in WIDTHS:
            space = space_for(width, resolution, args.depth)
            routed = routed_shortcuts(space.blueprint, space.minimum)
            cases = {
                f"supernet sandwich {name} {resolution}px": supernet_step(space, args.batch, resolution),
                f"plain min-config {name} {resolution}px": plain_step(space.blueprint, space.minimum, args.batch, resolution),
            }
            for case, step in cases.items():
                t = time_modes(step, warmup=1, steps=args.steps)
                print(f"{case:<34}{t['route']:>10.3f}{t['mkldnn off']:>14.3f}{t['mkldnn off'] / t['route']:>8.2f}  {routed}")
    print(f"\nshortcut layer alone, 16px, batch {args.batch}, forward + backward (ms):")
    print(f"{'input channels':<16}{'route':>8}{'mkldnn off':>12}{'oneDNN NCHW':>13}")
    for cin in (2, 4, 7):
        ms = layer_step(cin, args.batch, 16)
        print(f"{cin:<16}{ms['route']:>8.2f}{ms['mkldnn off']:>12.2f}{ms['oneDNN NCHW']:>13.2f}")


if __name__ == "__main__":
    main()
