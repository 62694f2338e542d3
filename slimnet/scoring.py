"""Top-1 accuracy and cross-entropy: the one way every stage scores a classifier."""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn


def top1_and_loss(outputs: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> tuple[float, float]:
    """Top-1 (%) and mean cross-entropy over (logits, labels) pairs."""
    correct = total = 0
    loss = 0.0
    for logits, labels in outputs:
        logits = logits.float()
        loss += float(F.cross_entropy(logits, labels, reduction="sum"))
        correct += int((logits.argmax(-1) == labels).sum())
        total += len(labels)
    return 100.0 * correct / max(total, 1), loss / max(total, 1)


@torch.no_grad()
def accuracy(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> tuple[float, float]:
    """Top-1 (%) and mean cross-entropy of ``model`` in eval mode."""
    model.eval()
    return top1_and_loss((model(x), y) for x, y in batches)
