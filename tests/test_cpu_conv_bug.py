"""torch 2.14.1's oneDNN CPU bug in the weight gradient of narrow 1x1 strided convolutions.

The supernet steps run in a subprocess: without the route in slimnet.nn.safe_conv the bug
aborts the interpreter (one thread) or gives wrong weight gradients (two threads), and
either must fail a test rather than kill pytest.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from slimnet.nn.safe_conv import Conv2d, conv2d, hits_onednn_bug, pointwise_conv
from tests.float64 import SOUND

pytestmark = pytest.mark.slow  # subprocesses and real trainings: `pytest -m 'not slow'` leaves it out

ROOT = Path(__file__).resolve().parents[1]

# A ResNet-18 supernet whose stem (the stage-2 shortcut's input, at 16 px) ranges over 2..7
# channels and whose stage 2 (the stage-3 shortcut's input, at 8 px) starts at 4: every input
# width the bug needs, under batch 128 and sandwich steps. ``route`` False disables the fix.
SCRIPT = """
import json, sys
import torch
from slimnet.nn import safe_conv
from slimnet.nn.network import Network
from slimnet.training.sandwich import build_space, build_supernet, sandwich_step
from tests.float64 import worst_error
from tests.realdata import small_resnet_reference

route, threads = sys.argv[1] == "1", int(sys.argv[2])
torch.set_num_threads(threads)
if not route:
    safe_conv.hits_onednn_bug = lambda *args: False
torch.manual_seed(0)
space = build_space(small_resnet_reference(16), min_width=0.125, max_width=0.4375, groups=16, divisor=1)
assert space.choices["stem"] == [2, 3, 4, 5, 6, 7], space.choices["stem"]
network = build_supernet(space).to(memory_format=torch.channels_last)
optimizer = torch.optim.SGD(network.parameters(), lr=0.05, momentum=0.9)
generator = torch.Generator().manual_seed(0)
images = torch.randn(128, 1, 16, 16).contiguous(memory_format=torch.channels_last)
labels = torch.randint(0, 10, (128,))
losses, stems = [], set()
while len(losses) < 2 or (stems != set(range(2, 8)) and len(losses) < 10):
    loss, configs = sandwich_step(
        network, space, optimizer, images, labels, samples=4, label_smoothing=0.0, generator=generator
    )
    losses.append(loss)
    stems.update(c["stem"] for c in configs)
assert stems == set(range(2, 8)), stems

# Silent corruption (several threads): conv weight gradients against float64 copies of the
# same models and batch, the ground truth (tests/float64.py says why oneDNN switched off is none).
worst = 0.0
for config in (space.minimum, space.sample(generator)):
    network.set_channels(config)
    plain = Network(space.blueprint, config).to(memory_format=torch.channels_last)
    worst = max(worst, worst_error([network, plain], images))
print(json.dumps({"losses": losses, "worst": worst}))
"""


def run_steps(route: bool, threads: int, timeout: float = 120) -> subprocess.CompletedProcess:
    """The script above in a fresh interpreter: a crash or hang comes back as a failed process."""
    try:
        return subprocess.run(
            [sys.executable, "-c", SCRIPT, "1" if route else "0", str(threads)],
            cwd=ROOT,
            # Passive OpenMP waits: spinning threads stall badly on a busy 2-core machine.
            env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_WAIT_POLICY": "PASSIVE"},
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as error:
        return subprocess.CompletedProcess(error.cmd, -1, "", f"hung for {timeout}s")


@pytest.mark.parametrize("threads", [1, 2])
def test_narrow_resnet_supernet_trains_on_cpu(threads):
    result = run_steps(route=True, threads=threads)
    assert result.returncode == 0, f"exit {result.returncode}: {result.stderr[-2000:]}"
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert all(torch.isfinite(torch.tensor(report["losses"])))
    assert report["worst"] < SOUND  # against float64 (was 1e-3 against oneDNN switched off)


@pytest.mark.parametrize("stride", [1, 2, 3])
@pytest.mark.parametrize("size", [(9, 9), (16, 16), (15, 10)])
@pytest.mark.parametrize("channels_last", [True, False])
def test_pointwise_conv_equals_conv2d(stride, size, channels_last):
    torch.manual_seed(stride)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.randn(3, 5, *size, dtype=torch.float64).contiguous(memory_format=layout).requires_grad_()
    weight = torch.randn(7, 5, 1, 1, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(7, dtype=torch.float64, requires_grad=True)
    expected = F.conv2d(x, weight, bias, stride)
    grad = torch.randn_like(expected)
    want = torch.autograd.grad(expected, (x, weight, bias), grad)

    out = pointwise_conv(x, weight, bias, stride)
    assert out.shape == expected.shape
    assert out.is_contiguous(memory_format=layout)
    torch.testing.assert_close(out, expected)
    for got, ref in zip(torch.autograd.grad(out, (x, weight, bias), grad), want):
        torch.testing.assert_close(got, ref)


@pytest.mark.filterwarnings("ignore:TF32 acceleration")  # from mkldnn.flags on a CPU-only build
def test_route_only_where_the_bug_is():
    x = torch.randn(2, 4, 8, 8).contiguous(memory_format=torch.channels_last)
    weight = torch.randn(16, 4, 1, 1, requires_grad=True)
    assert hits_onednn_bug(x, weight, 2, 0, 1)
    assert hits_onednn_bug(x, weight, (2, 2), (0, 0), 1)
    assert not hits_onednn_bug(x, weight, 1, 0, 1)  # stride 1
    assert not hits_onednn_bug(x, torch.randn(16, 8, 1, 1, requires_grad=True), 2, 0, 1)  # 8 input channels
    assert not hits_onednn_bug(x, torch.randn(16, 4, 3, 3, requires_grad=True), 2, 1, 1)  # 3x3
    assert not hits_onednn_bug(x, weight.detach(), 2, 0, 1)  # no weight gradient
    with torch.no_grad():
        assert not hits_onednn_bug(x, weight, 2, 0, 1)
    with torch.backends.mkldnn.flags(enabled=False):
        assert not hits_onednn_bug(x, weight, 2, 0, 1)


def test_conv2d_module_keeps_nn_conv2d_state():
    torch.manual_seed(0)
    layer, reference = Conv2d(4, 6, 1, 2, 0, bias=False), torch.nn.Conv2d(4, 6, 1, 2, 0, bias=False)
    assert list(layer.state_dict()) == list(reference.state_dict())
    reference.load_state_dict(layer.state_dict())
    x = torch.randn(2, 4, 8, 8).contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(layer(x), reference(x))
    torch.testing.assert_close(conv2d(x, layer.weight, None, 2), F.conv2d(x, layer.weight, None, 2))
