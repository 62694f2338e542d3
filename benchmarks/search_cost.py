"""Greedy-search cost: evaluations per step, seconds per step, and the speed-up of slimnet's
prefix-caching evaluator over a naive one (a fresh full forward and full BN recalibration
for every candidate), measured in one run on the same supernet and batches.

    python benchmarks/search_cost.py [--arch mobilenet_v2] [--steps 5] [--bn online|recalibrate]

Prints ratios, not pass/fail: speed targets live here, not in the test suite.
"""

from __future__ import annotations

import argparse
import time

import torch

from slimnet.arch import uniform_spec
from slimnet.models import scaled_depth
from slimnet.search import CandidateEvaluator, greedy_slim
from slimnet.supernet import build_space, build_supernet


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="mobilenet_v2")
    parser.add_argument("--width", type=float, default=0.245, help="the projected network's width")
    parser.add_argument("--depth", type=float, default=0.5)
    parser.add_argument("--resolution", type=int, default=16)
    parser.add_argument("--images", type=int, default=512, help="held-out (and calibration) images per candidate")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--bn", default="online", choices=["online", "recalibrate"])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()

    torch.manual_seed(0)
    device = torch.device(args.device)
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
    network = build_supernet(space).to(device, memory_format=torch.channels_last).eval()

    # Weights do not change the cost of a step; random images keep the benchmark self-contained.
    def batch():
        return torch.randn(args.images, 1, args.resolution, args.resolution, device=device).contiguous(
            memory_format=torch.channels_last
        ), torch.randint(0, 10, (args.images,), device=device)

    calib, evals = [batch()], [batch()]

    results = {}
    for name, cache_bytes in (("cached", 2**31), ("naive", 0)):
        evaluator = CandidateEvaluator(network, space, calib, evals, cache_bytes=cache_bytes, bn=args.bn)
        greedy_slim(evaluator, reference=reference, max_steps=1)  # warm-up
        evaluator.evaluations = 0
        if device.type == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        trajectory = greedy_slim(evaluator, reference=reference, max_steps=args.steps)
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - started
        results[name] = (trajectory, seconds, evaluator.evaluations)

    # Both evaluators must score the same candidates alike (float rounding aside).
    cached = CandidateEvaluator(network, space, calib, evals, bn=args.bn)
    naive = CandidateEvaluator(network, space, calib, evals, bn=args.bn, cache_bytes=0)
    cached.commit(space.maximum), naive.commit(space.maximum)
    worst = 0.0
    for unit in space.choices:
        candidate = {**space.maximum, unit: space.smaller(space.maximum, unit)}
        worst = max(worst, abs(cached.score(candidate, unit).loss - naive.score(candidate, unit).loss))
    print(
        f"{args.arch} projected to width {args.width}, depth {args.depth}, {args.resolution}px; {len(space.choices)} units; "
        f"{args.images} images per candidate; bn={args.bn}; device={device}"
    )
    for name, (trajectory, seconds, evaluations) in results.items():
        steps = len(trajectory) - 1
        print(
            f"{name:>7}: {evaluations / steps:.1f} evaluations/step, {seconds / steps:.3f} s/step, "
            f"{1000 * seconds / evaluations:.1f} ms/evaluation"
        )
    ratio = results["naive"][1] / results["cached"][1]
    print(f"speed-up of cached over naive: {ratio:.2f}x (first-step candidate losses agree within {worst:.1e})")


if __name__ == "__main__":
    main()
