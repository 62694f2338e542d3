"""A killed training resumes from its last checkpoint: the saved weights, optimizer and data
order, running only the epochs that were missing.

(Bitwise equality with an unbroken run is not asserted: oneDNN's CPU convolutions may round
differently between two runs of the same program, so two unbroken runs differ too.)"""

from __future__ import annotations

import json

import pytest
import torch

from slimnet.console.progress import Reporter
from slimnet.datasets.load import load_split
from slimnet.nn.network import Network
from slimnet.space.spec import uniform_spec
from slimnet.training.checkpoint import Checkpoints
from slimnet.training.live import LiveCurves
from slimnet.training.recipe import Recipe
from slimnet.training.scratch import BN_IMAGES, train_network
from tests.realdata import needs_fashion_mnist, prepare_fashion_slice, train_small_supernet

pytestmark = [needs_fashion_mnist, pytest.mark.slow]


class Killed(Exception):
    pass


def kill_after_first_epoch(row: dict) -> None:
    if row["epoch"] == 1:
        raise Killed


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return prepare_fashion_slice(tmp_path_factory.mktemp("fashion"), fraction=0.02)


def first_training_state(model: torch.nn.Module, record: list) -> None:
    """Record the weights seen by the first training forward, and count training forwards."""

    def hook(module, _inputs):
        if module.training:
            if not record:
                record.append({k: v.detach().clone() for k, v in module.state_dict().items()})
            record.append(None)

    model.register_forward_pre_hook(hook)


def same_state(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k].cpu(), b[k].cpu()) for k in a)


def test_supernet_training_resumes_from_its_checkpoint(data_dir, tmp_path, monkeypatch):
    import slimnet.training.sandwich as supernet_module

    with pytest.raises(Killed):
        train_small_supernet(data_dir, tmp_path, epochs=2, on_epoch=kill_after_first_epoch)
    saved = torch.load(tmp_path / "small.pt", weights_only=False)
    assert saved["epoch"] == 1

    record: list = []
    real_step = supernet_module.sandwich_step

    def spy(network, *args, **kwargs):
        if not record:
            first_training_state(network, record)
        return real_step(network, *args, **kwargs)

    monkeypatch.setattr(supernet_module, "sandwich_step", spy)
    _, _, _, _, curves, _ = train_small_supernet(data_dir, tmp_path, epochs=2)
    assert [row["epoch"] for row in curves] == [1, 2]
    assert curves[0] == saved["curves"][0]
    assert same_state(record[0], saved["model"])
    steps_per_epoch = len(load_split(data_dir / "search" / "train.pt")) // 64
    configs_per_step = 3  # max, min and one random sample
    assert len(record) - 1 == steps_per_epoch * configs_per_step  # epoch 2 only


def test_from_scratch_training_resumes_from_its_checkpoint(data_dir, tmp_path):
    train_set = load_split(data_dir / "full" / "train.pt")
    val_set = load_split(data_dir / "full" / "val.pt")
    spec = uniform_spec(
        "mobilenet_v2", 0.35, resolution=28, num_classes=10, in_channels=1, cifar=True, depth=(1, 1, 1, 1, 1, 1, 1)
    )
    recipe = Recipe(epochs=2, batch_size=64, lr=0.1, seed=0)

    def run(on_epoch=None, record=None):
        torch.manual_seed(0)
        model = Network(spec.blueprint())
        if record is not None:
            first_training_state(model, record)
        return train_network(
            model,
            train_set,
            val_set,
            recipe=recipe,
            checkpoints=Checkpoints(tmp_path, "net"),
            device=torch.device("cpu"),
            report=Reporter(None, LiveCurves(tmp_path / "live")),  # as the train stage: cleared at each start
            on_epoch=on_epoch,
        )

    with pytest.raises(Killed):
        run(kill_after_first_epoch)
    saved = torch.load(tmp_path / "net.pt", weights_only=False)
    record: list = []
    _, curves, summary = run(record=record)
    assert [row["epoch"] for row in curves] == [1, 2] and curves[0] == saved["curves"][0]
    assert same_state(record[0], saved["model"])
    bn_batches = -(-min(len(train_set), BN_IMAGES) // 512)  # BN re-estimation forwards after the epoch
    assert len(record) - 1 == len(train_set) // 64 + bn_batches  # epoch 2 only
    assert summary["val_acc"] == curves[-1]["val_acc"]
    # The live curves hold both epochs once: the killed run's first (restored), then the second.
    rows = (tmp_path / "live" / "plots" / "metrics" / "val_acc.tsv").read_text().splitlines()
    assert rows == ["step\tval_acc", f"1\t{saved['curves'][0]['val_acc']}", f"2\t{curves[1]['val_acc']}"]
    assert json.loads((tmp_path / "live" / "metrics.json").read_text()) == {"val_acc": curves[1]["val_acc"], "epoch": 2}
