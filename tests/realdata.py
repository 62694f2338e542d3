"""Small real-data setups shared by the tests: a slice of Fashion-MNIST, a briefly trained supernet."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from slimnet.console.progress import Reporter
from slimnet.datasets.load import fixed_batches, load_split
from slimnet.datasets.prepare import prepare_full
from slimnet.datasets.projection import project_search
from slimnet.datasets.sources import DEBIAN_FASHION_MNIST
from slimnet.space.spec import uniform_spec
from slimnet.training.checkpoint import Checkpoints
from slimnet.training.recipe import Recipe
from slimnet.training.sandwich import build_space, train_supernet

needs_fashion_mnist = pytest.mark.skipif(
    not DEBIAN_FASHION_MNIST.is_dir(), reason="Fashion-MNIST missing: apt-get install -y dataset-fashion-mnist"
)


def prepare_fashion_slice(out_dir: Path, *, fraction: float = 0.1, search_resolution: int = 14) -> Path:
    prepare_full("fashion-mnist", out_dir / "raw", out_dir, val_fraction=0.1, resolution=None, seed=0, fraction=fraction)
    project_search(out_dir, resolution=search_resolution, fraction=1.0)
    return out_dir


def small_resnet_reference(resolution: int = 14):
    """A ResNet-18-style network (residual-coupled units), narrow and one block per stage."""
    return uniform_spec(
        "resnet18", 0.25, resolution=resolution, num_classes=10, in_channels=1, cifar=True, depth=(1, 1, 1, 1), divisor=2
    )


def train_small_supernet(data_dir: Path, checkpoint_dir: Path, *, epochs: int = 3, on_epoch=None):
    """Sandwich-train the small ResNet supernet on the search split; returns what tests need."""
    train_set = load_split(data_dir / "search" / "train.pt")
    val_set = load_split(data_dir / "search" / "val.pt")
    reference = small_resnet_reference(train_set.resolution)
    space = build_space(reference, min_width=0.25, max_width=1.0, groups=4, divisor=2)
    calib = fixed_batches(train_set, 512, 512, 0)
    evals = fixed_batches(val_set, 512, 512, 1)
    torch.manual_seed(0)
    network, curves, summary = train_supernet(
        space,
        train_set,
        calib,
        evals,
        recipe=Recipe(epochs=epochs, batch_size=64, lr=0.1, warmup_epochs=0.2, seed=0),
        samples=1,
        resolution=reference.resolution,
        checkpoints=Checkpoints(checkpoint_dir, "small"),
        device=torch.device("cpu"),
        report=Reporter(None),
        on_epoch=on_epoch,
    )
    return network, space, calib, evals, curves, summary
