"""How fast this machine is right now: a fixed workload to read a suite timing against.

The 2-core VMs the suite is timed on run the same code 20-30% slower at some hours than at others
(benchmarks/README.md, "The test suite, measured"). Run this before and after a timed run:

    python3 benchmarks/vm_speed.py

It prints the best of three for what a pipeline stage pays before and while it works: a fresh
Python importing torch (a process start), and one thread training a small CNN for a fixed number
of steps (the tiny project's stage compute). Lower is faster; compare runs on the same machine.
"""

from __future__ import annotations

import subprocess
import sys
import time


def import_seconds() -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import torch"], check=True)
    return time.perf_counter() - start


def training_seconds(steps: int = 100) -> float:
    import torch
    from torch import nn

    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.Conv2d(16, 32, 3, stride=2, padding=1),
        nn.BatchNorm2d(32),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(32, 10),
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    images, labels = torch.randn(64, 1, 28, 28), torch.randint(0, 10, (64,))
    optimizer.step()  # torch.optim's first call imports torch._dynamo: not the workload
    start = time.perf_counter()
    for _ in range(steps):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(images), labels).backward()
        optimizer.step()
    return time.perf_counter() - start


def main() -> None:
    imports = min(import_seconds() for _ in range(3))
    training = min(training_seconds() for _ in range(3))
    print(f"import torch (a process): {imports:.2f} s   100 training steps, one thread: {training:.2f} s")


if __name__ == "__main__":
    main()
