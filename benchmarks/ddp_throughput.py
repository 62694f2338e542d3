"""Images per second of supernet (sandwich-rule) steps and from-scratch training steps on 1 vs 2
data-parallel processes (torchrun, gloo on CPU), and the time spent in the gradient all-reduce.

    python benchmarks/ddp_throughput.py            # 3 setups, interleaved, 3 repeats, medians
    python benchmarks/ddp_throughput.py --repeats 5 --steps 30

Setups: 1 process with all cores' threads (what resources.threads: auto gives), 1 process with 1
thread, and N = 2 processes of cores/N threads each (on a 2-core CPU the 2 processes share the
two cores: one thread each), each launched by torchrun. The workload is the default pipeline's:
the MobileNetV2-0.35 supernet of the projected problem (0.7x width, half depth, 16 px, 2 random
configurations per step) and the full MobileNetV2-0.35 at 28 px, global batch 128, on random
uint8 images held in memory (the data path is the same as Fashion-MNIST's). Figures are rank 0's
wall time over the timed steps (after 3 warm-up steps); all-reduce time includes waiting for the
slower rank.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

BATCH = 128
WARMUP = 3


def image_set(resolution: int, images: int):
    from slimnet.datasets.load import TensorImageSet

    generator = torch.Generator().manual_seed(0)
    record = {
        "kind": "tensor",
        "images": torch.randint(0, 256, (images, 1, resolution, resolution), dtype=torch.uint8, generator=generator),
        "labels": torch.randint(0, 10, (images,), generator=generator),
        "indices": torch.arange(images),
        "num_classes": 10,
        "in_channels": 1,
        "resolution": resolution,
        "mean": [0.5],
        "std": [0.25],
    }
    return TensorImageSet(record, torch.device("cpu"))


def timed(steps, world) -> float:
    """Seconds of the steps after the warm-up ones (ranks start and stop together)."""
    import torch.distributed as dist

    for _ in range(WARMUP):
        next(steps)
    if world.size > 1:
        dist.barrier()
    started = time.perf_counter()
    for _ in steps:
        pass
    if world.size > 1:
        dist.barrier()
    return time.perf_counter() - started


def supernet_steps(world, steps: int):
    import torch.nn as nn  # noqa: F401

    from slimnet.space.spec import uniform_spec
    from slimnet.training.distributed import GradientReducer
    from slimnet.training.optim import make_optimizer
    from slimnet.training.sandwich import build_space, build_supernet, sandwich_step

    reference = uniform_spec(
        "mobilenet_v2",
        0.35 * 0.7,
        resolution=16,
        num_classes=10,
        in_channels=1,
        cifar=True,
        depth=(1, 1, 2, 2, 2, 2, 1),
        divisor=2,
    )
    space = build_space(reference, min_width=0.15, max_width=1.5, groups=10, divisor=2)
    torch.manual_seed(0)
    network = build_supernet(space).to(memory_format=torch.channels_last)
    optimizer = make_optimizer(network, lr=0.025, momentum=0.9, nesterov=True, weight_decay=4e-5)
    reducer = GradientReducer(list(network.parameters()), world)
    data = image_set(16, BATCH * (steps + WARMUP))
    generator = torch.Generator().manual_seed(0)
    batches = data.batches(
        BATCH,
        shuffle=True,
        augment=True,
        generator=torch.Generator().manual_seed(1),
        drop_last=True,
        shard=(world.rank, world.size),
    )

    def run():
        for images, labels in batches:
            sandwich_step(
                network,
                space,
                optimizer,
                images,
                labels,
                samples=2,
                label_smoothing=0.1,
                generator=generator,
                reducer=reducer,
                global_batch=BATCH,
            )
            yield

    return run(), reducer


def training_steps(world, steps: int):
    import torch.nn.functional as F

    from slimnet.nn.network import Network
    from slimnet.space.spec import uniform_spec
    from slimnet.training.distributed import GradientReducer, loss_share
    from slimnet.training.optim import make_optimizer

    spec = uniform_spec("mobilenet_v2", 0.35, resolution=28, num_classes=10, in_channels=1, cifar=True)
    torch.manual_seed(0)
    model = Network(spec.blueprint()).to(memory_format=torch.channels_last).train()
    optimizer = make_optimizer(model, lr=0.05, momentum=0.9, nesterov=True, weight_decay=4e-5)
    reducer = GradientReducer(list(model.parameters()), world)
    data = image_set(28, BATCH * (steps + WARMUP))
    batches = data.batches(
        BATCH,
        shuffle=True,
        augment=True,
        generator=torch.Generator().manual_seed(1),
        drop_last=True,
        shard=(world.rank, world.size),
    )

    def run():
        # The step of slimnet.training.scratch.train_network.
        for x, y in batches:
            loss = F.cross_entropy(model(x), y, label_smoothing=0.1) * loss_share(len(y), BATCH)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            reducer.reduce(loss.detach())
            optimizer.step()
            yield

    return run(), reducer


def worker(out: Path, steps: int) -> None:
    from slimnet.parallel.world import join_world, leave_world

    world = join_world(torch.device("cpu"))
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    result = {"nproc": world.size, "threads": torch.get_num_threads()}
    try:
        for name, make in (("supernet", supernet_steps), ("train", training_steps)):
            run, reducer = make(world, steps)
            seconds = timed(run, world)
            result[name] = {"images_per_s": steps * BATCH / seconds, "seconds": seconds, "allreduce_s": reducer.seconds}
        if world.is_main:
            out.write_text(json.dumps(result))
    finally:
        leave_world()


def launch(nproc: int, threads: int, steps: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": str(threads)}
        command = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc-per-node",
            str(nproc),
            __file__,
            "--worker",
            str(out),
            "--steps",
            str(steps),
        ]
        subprocess.run(command, env=env, check=True)
        return json.loads(out.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--steps", type=int, default=20, help="timed steps per measurement (global batch 128)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if args.worker is not None:
        worker(args.worker, args.steps)
        return
    cores = os.cpu_count() or 1
    setups = [(1, cores), (1, 1), (2, max(1, cores // 2))]  # (processes, threads per process)
    runs: dict[tuple[int, int], list[dict]] = {setup: [] for setup in setups}
    for repeat in range(args.repeats):
        for setup in setups:  # interleaved: machine load drifts hit every setup alike
            runs[setup].append(launch(*setup, args.steps))
            print(f"repeat {repeat + 1}/{args.repeats}, {setup}: " + json.dumps(runs[setup][-1]), flush=True)
    print(f"\n{cores} cores, {args.steps} steps of global batch {BATCH}, medians of {args.repeats}:")
    print(f"{'':10}{'procs':>6}{'threads':>8}{'images/s':>10}{'all-reduce s':>14}{'% in all-reduce':>17}")
    median = {}
    for name in ("supernet", "train"):
        for setup in setups:
            rows = [r[name] for r in runs[setup]]
            ips = statistics.median(r["images_per_s"] for r in rows)
            ar = statistics.median(r["allreduce_s"] for r in rows)
            share = statistics.median(100 * r["allreduce_s"] / r["seconds"] for r in rows)
            median[name, setup] = ips
            print(f"{name:10}{setup[0]:>6}{setup[1]:>8}{ips:>10.1f}{ar:>14.2f}{share:>16.1f}%")
    for name in ("supernet", "train"):
        two = median[name, setups[2]]
        print(
            f"{name}: 2 processes / 1 process ({cores} threads) = {two / median[name, setups[0]]:.2f}x, "
            f"/ 1 process (1 thread) = {two / median[name, setups[1]]:.2f}x images/s"
        )


if __name__ == "__main__":
    main()
