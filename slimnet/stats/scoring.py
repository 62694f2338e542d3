"""Top-1 accuracy and cross-entropy: the one way every stage scores a classifier.

Under data parallelism each rank scores its share of the images; the counts and loss sums (not
the percentages) are summed over ranks, so the figures are those of the whole set.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from slimnet.parallel.world import SINGLE, World


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


NEWTON_STEPS = 12  # on the 1-D convex problem below: converged to ~1e-12 from scale 1 in 5-8 steps


def calibrated_loss(outputs: Iterable[tuple[torch.Tensor, torch.Tensor]], world: World = SINGLE) -> tuple[float, float]:
    """Cross-entropy at the best temperature, and the logit scale (1 / temperature) that gives it.

    A classifier's cross-entropy moves with the scale of its logits even where its ranking of the
    classes does not: a narrower last layer (no BN renormalizes the sum feeding the classifier)
    shrinks the logits and is punished for that alone. Minimized over one scale s, mean CE(s z)
    is convex in s, so Newton's method from s = 1 finds it; what is left is the loss a network
    earns by how it orders the classes. Every rank runs the same fixed steps on all-reduced sums.
    """
    pairs = [(logits.double(), labels) for logits, labels in outputs]
    scale = 1.0
    for _ in range(NEWTON_STEPS):
        sums = torch.zeros(3, dtype=torch.float64)  # first and second derivative in the scale, count
        for logits, labels in pairs:
            p = F.softmax(logits * scale, dim=-1)
            mean_logit = (p * logits).sum(-1)
            sums[0] += float((mean_logit - logits.gather(1, labels[:, None]).squeeze(1)).sum())
            sums[1] += float((p * logits.square()).sum(-1).sub(mean_logit.square()).sum())
            sums[2] += len(labels)
        if world.size > 1:
            sums = world.all_reduce_sum(sums)
        if sums[1] <= 0:
            break  # constant logits: every scale scores the same
        scale = max(scale - float(sums[0] / sums[1]), scale / 4)  # a Newton step, kept positive
    total = sums[2]
    loss = 0.0
    for logits, labels in pairs:
        loss += float(F.cross_entropy(logits * scale, labels, reduction="sum"))
    if world.size > 1:
        loss = float(world.all_reduce_sum(torch.tensor([loss], dtype=torch.float64))[0])
    return loss / max(float(total), 1.0), scale


@torch.no_grad()
def accuracy(
    model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]], world: World = SINGLE
) -> tuple[float, float]:
    """Top-1 (%) and mean cross-entropy of ``model`` in eval mode (over every rank's batches)."""
    model.eval()
    return top1_and_loss(((model(x), y) for x, y in batches), world)
