"""float64 as the ground truth for float32 convolution gradients on the CPU.

torch 2.14.1 has two float32 CPU convolution paths and each is wrong somewhere: oneDNN on
narrow strided 1x1 convs (slimnet.nn.safe_conv routes around it), the native channels-last
backward (oneDNN switched off) on small ResNets on an Intel Xeon (eval-mode conv weight
gradients 3e-3 to 3e-2 off, with 1 and 2 threads, where oneDNN agrees with float64 to 5e-6).
float64 never runs oneDNN, and both float32 paths agree with it where they are right, so no
test takes either float32 path as its reference: they compare with float64 (this module), or
run in float64 altogether (tests/test_ddp.py).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable

import torch
from torch import nn

SOUND = 1e-4  # worst relative error of a sound float32 path (seen: 2e-6 to 5e-6)


def conv_weight_grads(model: nn.Module, images: torch.Tensor, probe: torch.Tensor) -> dict[str, torch.Tensor]:
    """Gradients of every conv weight of ``model`` in eval mode (batch statistics make small
    gradients cancel down to float32 noise) for the loss sum(model(images) * probe)."""
    model.eval()
    model.zero_grad(set_to_none=True)
    (model(images).double() * probe).sum().backward()
    return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None and p.dim() == 4}


def worst_error(models: Iterable[nn.Module], images: torch.Tensor) -> float:
    """Largest relative error (max |difference| / max |float64 gradient|, per tensor) of the
    float32 conv weight gradients of ``models`` against float64 copies of them."""
    generator = torch.Generator().manual_seed(0)
    worst = 0.0
    for model in models:
        with torch.no_grad():
            classes = model.eval()(images[:1]).shape[-1]
        probe = torch.randn(len(images), classes, generator=generator, dtype=torch.float64)
        got = conv_weight_grads(model, images, probe)
        want = conv_weight_grads(copy.deepcopy(model).double(), images.double(), probe)
        assert want and got.keys() == want.keys()
        for name, g in want.items():
            worst = max(worst, float((got[name].double() - g).abs().max() / g.abs().max().clamp_min(1e-12)))
    return worst
