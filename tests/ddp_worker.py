"""The data-parallel runs tests/test_ddp.py compares with one process: a supernet epoch, two greedy
searches and a from-scratch training on a slice of Fashion-MNIST.

The test calls these functions in its own process (a world of one) and launches this file under
torchrun with 2 gloo processes; rank 0 saves what the ranks computed:

    python -m torch.distributed.run --standalone --nproc-per-node 2 tests/ddp_worker.py DATA OUT
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from slimnet.console.progress import Reporter  # noqa: E402
from slimnet.datasets.load import fixed_batches, load_split  # noqa: E402
from slimnet.nn.network import Network  # noqa: E402
from slimnet.optimizers.autoslim import CandidateEvaluator, greedy_slim  # noqa: E402
from slimnet.parallel.world import SINGLE, World, join_world, leave_world  # noqa: E402
from slimnet.training.checkpoint import Checkpoints  # noqa: E402
from slimnet.training.recipe import Recipe  # noqa: E402
from slimnet.training.sandwich import build_space, build_supernet, train_supernet  # noqa: E402
from slimnet.training.scratch import train_network  # noqa: E402
from tests.realdata import small_resnet_reference  # noqa: E402

CPU = torch.device("cpu")
SEARCH_STEPS = 6
STEP_IMAGES = 256  # training images of the compared epochs: 4 steps of 64


def in_float64() -> None:
    """Both sides of the comparison compute in float64: float32 rounding differences between one
    process and two (1e-7) grow chaotically over a few steps (to ~1e-3 after 16), and float32
    has no CPU convolution path that is right everywhere (tests/float64.py); float64 never runs
    oneDNN, and there the two agree to 1e-15."""
    torch.set_default_dtype(torch.float64)


def supernet_epoch(data_dir: Path, work: Path, world: World) -> dict:
    """One sandwich-rule epoch (4 steps of global batch 64, sync BN) of the small ResNet supernet.

    Few steps: float32 rounding differences between one process and two (1e-7 here) grow
    chaotically over longer runs (to ~1e-3 after 16 steps); in float64 the two agree to 1e-15."""
    train_set = load_split(data_dir / "search" / "train.pt").subset(torch.arange(STEP_IMAGES))
    val_set = load_split(data_dir / "search" / "val.pt")
    reference = small_resnet_reference(train_set.resolution)
    space = build_space(reference, min_width=0.25, max_width=1.0, groups=4, divisor=2)
    calib = fixed_batches(train_set, 256, 128, 0)
    evals = world.share_batches(fixed_batches(val_set, 256, 128, 1))
    torch.manual_seed(0)
    network, curves, _ = train_supernet(
        space,
        train_set,
        calib,
        evals,
        recipe=Recipe(epochs=1, batch_size=64, lr=0.1, warmup_epochs=0.5, seed=0),
        samples=1,
        resolution=reference.resolution,
        checkpoints=Checkpoints(work / f"supernet-{world.size}", "small"),
        device=CPU,
        report=Reporter(None),
        world=world,
        sync_bn=True,
    )
    return {"state": {k: v.detach().clone() for k, v in network.state_dict().items()}, "curves": curves}


def search(data_dir: Path, supernet_state: dict, bn: str, world: World) -> list[dict]:
    """The first greedy steps on a given supernet; each rank scores its share of the held-out batches."""
    train_set = load_split(data_dir / "search" / "train.pt")
    val_set = load_split(data_dir / "search" / "val.pt")
    reference = small_resnet_reference(train_set.resolution)
    space = build_space(reference, min_width=0.25, max_width=1.0, groups=4, divisor=2)
    network = build_supernet(space)
    network.load_state_dict(supernet_state)
    calib = fixed_batches(train_set, 256, 64, 0)
    evals = world.share_batches(fixed_batches(val_set, 256, 64, 1))  # 120 images: batches of 64 and 56, one per rank
    evaluator = CandidateEvaluator(network, space, calib, evals, bn=bn, world=world)
    points = greedy_slim(evaluator, reference=reference, max_steps=SEARCH_STEPS)
    return [p.model_dump() for p in points]


def training(data_dir: Path, work: Path, world: World) -> dict:
    """One from-scratch epoch (4 steps of global batch 64, sync BN) of the small plain ResNet at 28 px."""
    spec = small_resnet_reference(28)
    torch.manual_seed(0)
    model, curves, _ = train_network(
        Network(spec.blueprint()),
        load_split(data_dir / "full" / "train.pt").subset(torch.arange(STEP_IMAGES)),
        load_split(data_dir / "full" / "val.pt"),
        recipe=Recipe(epochs=1, batch_size=64, lr=0.1, seed=0),
        checkpoints=Checkpoints(work / f"train-{world.size}", "net"),
        device=CPU,
        report=Reporter(None),
        world=world,
        sync_bn=True,
    )
    return {"state": {k: v.detach().clone() for k, v in model.state_dict().items()}, "curves": curves}


def after_supernet(data_dir: Path, work: Path, supernet_state: dict, world: World = SINGLE) -> dict:
    return {
        "search_online": search(data_dir, supernet_state, "online", world),
        "search_recalibrate": search(data_dir, supernet_state, "recalibrate", world),
        "training": training(data_dir, work, world),
    }


if __name__ == "__main__":
    data_dir, work = Path(sys.argv[1]), Path(sys.argv[2])
    torch.set_num_threads(1)
    in_float64()
    world = join_world(CPU)
    try:
        results = {"supernet": supernet_epoch(data_dir, work, world)}
        results.update(after_supernet(data_dir, work, torch.load(work / "supernet-state.pt"), world))
        results["world_size"] = world.size
        if world.is_main:
            torch.save(results, work / "ddp-results.pt")
    finally:
        leave_world()
