"""From-scratch training throughput: slimnet's MobileNetV2 against torchvision's, same network,
optimizer, loss and batch, in one run.

    python benchmarks/train_throughput.py [--cases 1.0@224,0.35@32] [--batch 32] [--steps 3] [--rounds 3]

Each case is width@resolution (ImageNet layout, 1000 classes, 3 input channels). slimnet's
network is slimnet.nn.network.Network from the mobilenet_v2 blueprint; the parameter counts of
the two are printed (they must match). Both train with slimnet's SGD (nesterov, weight decay
groups) and label-smoothed cross-entropy; torchvision's model runs in both memory layouts and
slimnet's (channels-last, as slimnet trains) is compared with the faster. Rounds alternate the
models and the medians are compared. The goal: at least 0.95x torchvision's images/s.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
import torchvision

from slimnet.nn.network import Network
from slimnet.space.models import build_blueprint
from slimnet.training.optim import make_optimizer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default="1.0@224,0.35@32", help="comma-separated width@resolution")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"batch {args.batch}; {torch.get_num_threads()} threads; {args.steps} steps x {args.rounds} alternating rounds")

    for case in args.cases.split(","):
        width, resolution = float(case.split("@")[0]), int(case.split("@")[1])
        torch.manual_seed(0)
        models = {
            "slimnet (channels-last)": (Network(build_blueprint("mobilenet_v2", width=width)), torch.channels_last),
            "torchvision (channels-last)": (torchvision.models.mobilenet_v2(width_mult=width), torch.channels_last),
            "torchvision (NCHW)": (torchvision.models.mobilenet_v2(width_mult=width), torch.contiguous_format),
        }
        counts = {name: sum(p.numel() for p in model.parameters()) for name, (model, _) in models.items()}
        images = torch.randn(args.batch, 3, resolution, resolution)
        labels = torch.randint(0, 1000, (args.batch,))
        steps = {}
        for name, (model, layout) in models.items():
            model = model.to(memory_format=layout).train()
            optimizer = make_optimizer(model, lr=0.1, momentum=0.9, nesterov=True, weight_decay=4e-5)
            x = images.contiguous(memory_format=layout)

            def step(model=model, optimizer=optimizer, x=x, labels=labels) -> None:
                loss = F.cross_entropy(model(x).float(), labels, label_smoothing=0.1)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()

            step()  # warm-up
            steps[name] = step
        seconds: dict[str, list[float]] = {name: [] for name in steps}
        for _ in range(args.rounds):
            for name, step in steps.items():
                started = time.perf_counter()
                for _ in range(args.steps):
                    step()
                seconds[name].append((time.perf_counter() - started) / args.steps)
        rate = {name: args.batch / statistics.median(values) for name, values in seconds.items()}
        print(
            f"MobileNetV2 {width}x at {resolution}px ({counts['slimnet (channels-last)']:,} parameters in slimnet's, "
            f"{counts['torchvision (NCHW)']:,} in torchvision's)"
        )
        for name, value in rate.items():
            print(f"  {name:>28}: {value:.1f} images/s")
        best = max(v for name, v in rate.items() if name.startswith("torchvision"))
        print(f"  slimnet / best torchvision: {rate['slimnet (channels-last)'] / best:.2f}x (goal: at least 0.95x)")


if __name__ == "__main__":
    main()
