"""DMCP's architecture optimizer on a tiny problem: how far SGD (the official choice) and Adam
(slimnet's) bring the expected FLOPs to the target in a few dozen steps.

    python benchmarks/dmcp_arch_optimizer.py [sgd:5:1 sgd:20:1 adam:0.1:1 adam:0.1:0.1 ...]

Each argument is optimizer:arch_lr:cost_weight. The problem is tests/test_dmcp.py's: the small
ResNet supernet (2 epochs) on 2% of Fashion-MNIST at 12 px, target 50% of the largest
configuration's FLOPs, 3 epochs of DMCP. Prints the expected FLOPs over the target after each
epoch and the derived widths' ratio. Needs the Debian Fashion-MNIST (apt-get install -y
dataset-fashion-mnist). One thread.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import slimnet.optimizers.dmcp_training as dmcp_training  # noqa: E402
import tests.test_dmcp as test_dmcp  # noqa: E402
from tests.realdata import prepare_fashion_slice, train_small_supernet  # noqa: E402

ADAM = dmcp_training.arch_optimizer


def sgd(parameters: list[torch.nn.Parameter], lr: float) -> torch.optim.Optimizer:
    """The official arch optimizer: SGD with momentum 0.9 (nesterov, as the weights')."""
    return torch.optim.SGD(parameters, lr=lr, momentum=0.9, nesterov=True)


def main() -> None:
    torch.set_num_threads(1)
    settings = sys.argv[1:] or ["sgd:5:1", "sgd:20:1", "sgd:50:1", "adam:0.1:1", "adam:0.1:0.1"]
    work = Path(tempfile.mkdtemp())
    data = prepare_fashion_slice(work / "fashion", fraction=0.02, search_resolution=12)
    supernet = train_small_supernet(data, work / "supernet", epochs=2)
    for setting in settings:
        name, lr, weight = setting.split(":")
        dmcp_training.arch_optimizer = sgd if name == "sgd" else ADAM
        try:
            _, _, curves, summary, _, target = test_dmcp.run_dmcp(
                data, supernet, work / setting.replace(":", "-"), 0.5, arch_lr=float(lr), cost_weight=float(weight)
            )
        finally:
            dmcp_training.arch_optimizer = ADAM
        expected = ", ".join(f"{100 * row['expected_flops_ratio']:.1f}%" for row in curves)
        print(
            f"{setting}: expected FLOPs / target by epoch {expected}; derived widths {100 * summary['derived']['flops'] / target:.1f}%"
        )


if __name__ == "__main__":
    main()
