"""Greedy-search cost: slimnet's evaluator (each candidate computed only from where it differs
from the committed configuration) against the naive one (``cache_bytes=0``: a full forward,
and a full BN recalibration, per candidate), on the same supernet and batches in one run.

    python benchmarks/search_cost.py [--arch mobilenet_v2] [--steps 5] [--bn online|recalibrate] [--rounds 3]

Both evaluators run the same multi-step greedy trajectory; rounds alternate fast and naive and
the medians are compared, so a busy machine slows both alike. It prints whether the two
trajectories are identical (units chosen, accuracies, losses, channels) and the speed-up.
Prints ratios, not pass/fail: speed targets live here, not in the test suite.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from slimnet.optimizers.autoslim import CandidateEvaluator, greedy_slim
from slimnet.space.models import scaled_depth
from slimnet.space.spec import uniform_spec
from slimnet.training.sandwich import build_space, build_supernet


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="mobilenet_v2")
    parser.add_argument("--width", type=float, default=0.245, help="the projected network's width (default: 0.35 x 0.7)")
    parser.add_argument("--depth", type=float, default=0.5)
    parser.add_argument("--resolution", type=int, default=16)
    parser.add_argument("--images", type=int, default=512, help="held-out (and calibration) images per candidate")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3, help="alternating timed runs of each evaluator (median)")
    parser.add_argument("--bn", default="online", choices=["online", "recalibrate"])
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument(
        "--per-candidate", action="store_true", help="also time each unit's candidate, fast and naive back to back"
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

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
    evaluators = {
        "fast": CandidateEvaluator(network, space, calib, evals, bn=args.bn),
        "naive": CandidateEvaluator(network, space, calib, evals, bn=args.bn, cache_bytes=0),
    }

    def run(name: str, steps: int):
        evaluator = evaluators[name]
        evaluator.evaluations = 0
        if device.type == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        trajectory = greedy_slim(evaluator, reference=reference, max_steps=steps)
        if device.type == "cuda":
            torch.cuda.synchronize()
        return trajectory, time.perf_counter() - started, evaluator.evaluations

    for name in evaluators:
        run(name, 1)  # warm-up
    seconds: dict[str, list[float]] = {name: [] for name in evaluators}
    trajectories = {}
    for _ in range(args.rounds):
        for name in evaluators:
            trajectory, spent, evaluations = run(name, args.steps)
            seconds[name].append(spent)
            trajectories[name] = (trajectory, evaluations)

    print(
        f"{args.arch} projected to width {args.width}, depth {args.depth}, {args.resolution}px; {len(space.choices)} units; "
        f"{args.images} images per candidate; bn={args.bn}; device={device}, {torch.get_num_threads()} threads; "
        f"{args.steps} greedy steps x {args.rounds} alternating rounds"
    )
    for name, (trajectory, evaluations) in trajectories.items():
        steps = len(trajectory) - 1
        median = statistics.median(seconds[name])
        spread = ", ".join(f"{s:.2f}" for s in seconds[name])
        print(
            f"{name:>6}: {evaluations / steps:.1f} evaluations/step, {median / steps:.3f} s/step (median; runs {spread} s), "
            f"{1000 * median / evaluations:.1f} ms/evaluation"
        )
    fast, naive = trajectories["fast"][0], trajectories["naive"][0]
    same = [p.model_dump() for p in fast] == [p.model_dump() for p in naive]
    print(f"trajectories identical (units, channels, accuracies, losses of all {len(fast) - 1} steps): {same}")
    if not same:
        for a, b in zip(fast, naive):
            if a.model_dump() != b.model_dump():
                print(
                    f"  first difference at step {a.step}: fast {a.slimmed} {a.accuracy} {a.loss}, naive {b.slimmed} {b.accuracy} {b.loss}"
                )
                break
    ratio = statistics.median(seconds["naive"]) / statistics.median(seconds["fast"])
    print(f"speed-up of fast over naive: {ratio:.2f}x")
    if args.per_candidate:
        per_candidate(evaluators, space, args.rounds)


def per_candidate(evaluators: dict[str, CandidateEvaluator], space, rounds: int) -> None:
    """Each unit's candidate from the largest configuration, fast and naive back to back (finer
    interleaving than whole trajectories, so load swings cancel better)."""
    for evaluator in evaluators.values():
        evaluator.commit(space.maximum)
    totals = {name: 0.0 for name in evaluators}
    for unit in space.choices:
        candidate = {**space.maximum, unit: space.smaller(space.maximum, unit)}
        times: dict[str, list[float]] = {name: [] for name in evaluators}
        for _ in range(rounds):
            for name, evaluator in evaluators.items():
                started = time.perf_counter()
                evaluator.score(candidate, unit)
                times[name].append(time.perf_counter() - started)
        medians = {name: statistics.median(values) for name, values in times.items()}
        for name, value in medians.items():
            totals[name] += value
        print(f"  {unit:>20}: fast {1000 * medians['fast']:7.1f} ms, naive {1000 * medians['naive']:7.1f} ms")
    print(
        f"per candidate, summed over the {len(space.choices)} units: fast {totals['fast']:.2f} s, naive {totals['naive']:.2f} s: "
        f"{totals['naive'] / totals['fast']:.2f}x"
    )


if __name__ == "__main__":
    main()
