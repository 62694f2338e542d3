"""BN statistics for one sub-network: recalibrated on training batches, then used in eval."""

from __future__ import annotations

from collections.abc import Container, Iterable, Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import nn

from slimnet.nn.sliced import SlimBatchNorm2d


def slim_bns(module: nn.Module) -> list[SlimBatchNorm2d]:
    return [m for m in module.modules() if isinstance(m, SlimBatchNorm2d)]


def set_training(modules: Sequence[nn.Module], training: bool) -> None:
    """``network.train(training)`` given ``list(network.modules())``: the same flags, set without
    walking the tree or going through ``Module.__setattr__`` for each module. A greedy search
    switches modes thousands of times: ``train()`` took 3.2 s of an 11 s search of the tests'
    tiny project (cProfile, 2026-12-07). slimnet's modules do not override ``train()``."""
    for module in modules:
        module.__dict__["training"] = training


@contextmanager
def calibrating(modules: Sequence[nn.Module], bns: list[SlimBatchNorm2d]) -> Iterator[None]:
    """Within: the network whose ``modules`` these are in train mode, ``bns`` reset and
    cumulative-averaging what they see."""
    for bn in bns:
        bn.reset_running_stats()
        bn.calibrating = True
    set_training(modules, True)
    try:
        yield
    finally:
        for bn in bns:
            bn.calibrating = False
        set_training(modules, False)


@torch.no_grad()
def recalibrate(
    network: nn.Module, batches: Iterable[torch.Tensor], *, start: int = 0, capture: Container[int] = ()
) -> dict[int, list[torch.Tensor]]:
    """Cumulative-average BN statistics of ``network.blocks[start:]`` over ``batches``.

    ``batches`` are inputs of block ``start`` (images when ``start`` is 0), so a caller that
    caches earlier blocks' outputs recalibrates only what a candidate changes. The inputs of
    the blocks in ``capture`` are returned as seen during calibration (batch-statistics BN),
    which is exactly what a later recalibration from that block must be fed.
    """
    blocks = list(network.blocks)[start:]
    bns = [bn for block in blocks for bn in slim_bns(block)]
    captured: dict[int, list[torch.Tensor]] = {index: [] for index in capture}
    with calibrating(list(network.modules()), bns):
        for x in batches:
            for index, block in enumerate(blocks, start):
                if index in captured:
                    captured[index].append(x)
                x = block(x)
    return captured


@torch.no_grad()
def recalibrate_plain(model: nn.Module, batches: Iterable[torch.Tensor], bns: Sequence[nn.BatchNorm2d] | None = None) -> None:
    """Exact (cumulative-average) BN statistics of a plain network for its current weights.

    Running averages lag behind fast-moving weights early in training; re-estimating them at
    the end of an epoch costs a few forward passes and removes that lag from every evaluation.
    ``bns``: only these layers (default every ``BatchNorm2d``; a slimmable network's one width,
    :func:`slimnet.nn.switchable.recalibrate_width`); the others keep their statistics.
    """
    if bns is None:
        bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    saved = [bn.momentum for bn in bns]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None
    was_training = model.training
    model.train()
    try:
        for x in batches:
            model(x)
    finally:
        for bn, momentum in zip(bns, saved):
            bn.momentum = momentum
        model.train(was_training)
