"""Cost of slicing: one supernet sandwich step against the same four sub-networks built as plain
static networks doing the same forward, backward, losses and optimizer step, in one run.

    python benchmarks/sandwich_cost.py [--arch mobilenet_v2] [--batch 128] [--steps 5] [--rounds 3]

The supernet step is slimnet.training.sandwich.sandwich_step (max on the labels, min and 2 random
configurations distilled from the max's soft predictions; gradients add up, one SGD step).
The plain side builds each of those four configurations as slimnet.nn.network.Network
(slimmable=False) and runs the same sequence. Rounds alternate the two and the medians are
compared, so a busy machine slows both alike. The goal: the ratio at most 1.3x.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from slimnet.nn.network import Network, sliced_state_dict
from slimnet.space.models import scaled_depth
from slimnet.space.spec import uniform_spec
from slimnet.training.optim import make_optimizer
from slimnet.training.sandwich import build_space, build_supernet, distill_loss, sandwich_step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="mobilenet_v2")
    parser.add_argument("--width", type=float, default=0.245, help="the projected network's width (default: 0.35 x 0.7)")
    parser.add_argument("--depth", type=float, default=0.5)
    parser.add_argument("--resolution", type=int, default=16)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--samples", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5, help="timed steps per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    reference = uniform_spec(
        args.arch,
        args.width,
        resolution=args.resolution,
        num_classes=10,
        in_channels=1,
        cifar=True,
        depth=scaled_depth(args.arch, args.depth),
        divisor=2,
    )
    space = build_space(reference, min_width=0.15, max_width=1.5, groups=10, divisor=2)
    supernet = build_supernet(space).to(memory_format=torch.channels_last)
    recipe = dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=4e-5)
    super_opt = make_optimizer(supernet, **recipe)
    images = torch.randn(args.batch, 1, args.resolution, args.resolution).contiguous(memory_format=torch.channels_last)
    labels = torch.randint(0, 10, (args.batch,))

    def super_step() -> list[dict[str, int]]:
        # A fresh generator each step: the same four configurations every time, as on the plain side.
        generator = torch.Generator().manual_seed(0)
        _, configs = sandwich_step(
            supernet, space, super_opt, images, labels, samples=args.samples, label_smoothing=0.1, generator=generator
        )
        return configs

    configs = super_step()
    plains = []
    for config in configs:
        plain = Network(space.blueprint, config)
        plain.load_state_dict(sliced_state_dict(supernet, plain))
        plains.append(plain.to(memory_format=torch.channels_last).train())
    plain_opt = make_optimizer(torch.nn.ModuleList(plains), **recipe)

    def plain_step() -> None:
        plain_opt.zero_grad(set_to_none=True)
        teacher = None
        for index, plain in enumerate(plains):
            logits = plain(images)
            if index == 0:
                loss = F.cross_entropy(logits.float(), labels, label_smoothing=0.1)
                teacher = F.softmax(logits.detach().float(), dim=-1)
            else:
                loss = distill_loss(logits, teacher)
            loss.backward()
        plain_opt.step()

    steps = {"supernet": super_step, "plain": plain_step}
    for step in steps.values():
        step()  # warm-up
    seconds: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(args.rounds):
        for name, step in steps.items():
            started = time.perf_counter()
            for _ in range(args.steps):
                step()
            seconds[name].append((time.perf_counter() - started) / args.steps)

    print(
        f"{args.arch} supernet around width {args.width}, depth {args.depth}, {args.resolution}px; batch {args.batch}; "
        f"{len(configs)} configurations per step; {torch.get_num_threads()} threads; {args.steps} steps x {args.rounds} alternating rounds"
    )
    for name, values in seconds.items():
        print(
            f"{name:>8}: {1000 * statistics.median(values):.1f} ms/step (median; rounds {', '.join(f'{1000 * v:.0f}' for v in values)} ms)"
        )
    ratio = statistics.median(seconds["supernet"]) / statistics.median(seconds["plain"])
    print(f"supernet step / four plain networks: {ratio:.2f}x (goal: at most 1.3x)")


if __name__ == "__main__":
    main()
