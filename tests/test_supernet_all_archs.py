"""Every architecture's supernet trains on the CPU: a few sandwich steps at narrow widths.

Small on purpose (low width, a fifth of the depth, 16 px, supernet divisor 2) so that
the narrow layers the CPU convolution bug needs (see slimnet.nn.safe_conv) occur.
"""

import pytest
import torch

from slimnet.nn.network import Network
from slimnet.space.models import ARCHS, scaled_depth
from slimnet.space.spec import uniform_spec
from slimnet.training.sandwich import build_space, build_supernet, sandwich_step

pytestmark = pytest.mark.usefixtures("single_thread")

RESOLUTION = 16
CLASSES = 5
BATCH = 16


def small_space(arch: str):
    reference = uniform_spec(
        arch,
        0.25,
        resolution=RESOLUTION,
        num_classes=CLASSES,
        cifar=True,
        depth=scaled_depth(arch, 0.2),
        divisor=2,
    )
    return build_space(reference, min_width=0.25, max_width=1.0, groups=4, divisor=2)


def batch(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    images = torch.randn(BATCH, 3, RESOLUTION, RESOLUTION, generator=generator)
    return images.contiguous(memory_format=torch.channels_last), torch.randint(0, CLASSES, (BATCH,), generator=generator)


@pytest.mark.parametrize("arch", ARCHS)
def test_sandwich_steps_train_every_architecture(arch):
    torch.manual_seed(0)
    space = small_space(arch)
    assert min(space.minimum.values()) <= 4, "the space should reach narrow widths"
    network = build_supernet(space).to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(network.parameters(), lr=0.1, momentum=0.9)
    before = {name: p.detach().clone() for name, p in network.named_parameters()}
    generator = torch.Generator().manual_seed(0)
    seen = []
    for step in range(2):
        images, labels = batch(step)
        loss, configs = sandwich_step(
            network, space, optimizer, images, labels, samples=1, label_smoothing=0.1, generator=generator
        )
        assert torch.isfinite(torch.tensor(loss))
        seen += configs
    assert space.maximum in seen and space.minimum in seen and len(seen) == 6
    for name, p in network.named_parameters():
        assert torch.isfinite(p).all(), name
        assert not torch.equal(p, before[name]), f"{name} did not change"


@pytest.mark.parametrize("arch", [a for a in ARCHS if a.startswith("resnet")])
def test_plain_resnet_at_narrow_width_trains(arch):
    torch.manual_seed(0)
    space = small_space(arch)
    network = Network(space.blueprint, space.minimum).to(memory_format=torch.channels_last).train()
    images, labels = batch(0)
    torch.nn.functional.cross_entropy(network(images), labels).backward()
    for name, p in network.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, f"{name} got no gradient"
