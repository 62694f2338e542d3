"""Top-1 accuracy and cross-entropy: the one way every stage scores a classifier.

Under data parallelism each rank scores its share of the images; the counts and loss sums (not
the percentages) are summed over ranks, so the figures are those of the whole set.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from slimnet.distributed import SINGLE, World


def top1_and_loss(outputs: Iterable[tuple[torch.Tensor, torch.Tensor]], world: World = SINGLE) -> tuple[float, float]:
    """Top-1 (%) and mean cross-entropy over (logits, labels) pairs (of every rank's pairs)."""
    correct = total = 0
    loss = 0.0
    for logits, labels in outputs:
        logits = logits.float()
        loss += float(F.cross_entropy(logits, labels, reduction="sum"))
        correct += int((logits.argmax(-1) == labels).sum())
        total += len(labels)
    if world.size > 1:
        # float64 holds every count exactly; one collective for the three sums.
        sums = world.all_reduce_sum(torch.tensor([correct, loss, total], dtype=torch.float64))
        correct, loss, total = int(sums[0]), float(sums[1]), int(sums[2])
    return 100.0 * correct / max(total, 1), loss / max(total, 1)


@torch.no_grad()
def accuracy(
    model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]], world: World = SINGLE
) -> tuple[float, float]:
    """Top-1 (%) and mean cross-entropy of ``model`` in eval mode (over every rank's batches)."""
    model.eval()
    return top1_and_loss(((model(x), y) for x, y in batches), world)
