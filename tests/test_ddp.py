"""Data parallelism on 2 CPU processes (gloo, launched by torchrun) computes what one process
computes: the same supernet epoch and from-scratch training (global batch 64, BN statistics over
the global batch: resources.sync_bn, so the claim is exact up to float rounding), the same greedy
trajectory, shards that cover each batch once; a killed rank stops the stage with one line and
the next run resumes from the checkpoint."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from slimnet.config import ResourcesParams, load_params
from slimnet.console.errors import SlimnetError
from slimnet.datasets.load import load_split
from slimnet.parallel.world import World
from slimnet.pipeline.ranks import check_batches
from tests import ddp_worker
from tests.realdata import needs_fashion_mnist, prepare_fashion_slice

pytestmark = pytest.mark.slow  # subprocesses and real trainings: `pytest -m 'not slow'` leaves it out

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return prepare_fashion_slice(tmp_path_factory.mktemp("fashion") / "data", fraction=0.02)


def torchrun(*args: str, cwd: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def float64():
    """The one-process side in float64, as the worker (ddp_worker.in_float64)."""
    dtype = torch.get_default_dtype()
    ddp_worker.in_float64()
    yield
    torch.set_default_dtype(dtype)


@needs_fashion_mnist
def test_two_processes_compute_what_one_does(data_dir, tmp_path, single_thread, float64):
    one = {"supernet": ddp_worker.supernet_epoch(data_dir, tmp_path, World())}
    torch.save(one["supernet"]["state"], tmp_path / "supernet-state.pt")  # what both searches start from
    one.update(ddp_worker.after_supernet(data_dir, tmp_path, one["supernet"]["state"], World()))
    run = torchrun(str(REPO / "tests" / "ddp_worker.py"), str(data_dir), str(tmp_path))
    assert run.returncode == 0, run.stderr[-3000:]
    two = torch.load(tmp_path / "ddp-results.pt", weights_only=False)
    assert two["world_size"] == 2

    # One epoch of 4 sandwich steps / plain steps, each rank on 32 of every 64 images.
    for name in ("supernet", "training"):
        a, b = one[name]["state"], two[name]["state"]
        assert a.keys() == b.keys()
        for key in a:
            # float64: the two agree to 1e-13 here (1e-3 was the float32 bound, 1e-2 for BN statistics).
            assert a[key].dtype == torch.float64 or not a[key].is_floating_point()
            assert torch.allclose(a[key], b[key], rtol=1e-9, atol=1e-11), f"{name}: {key} differs"
        for row_a, row_b in zip(one[name]["curves"], two[name]["curves"]):
            assert row_a.keys() == row_b.keys()
            for key in row_a:
                assert row_a[key] == pytest.approx(row_b[key], abs=1e-9), (name, key)

    # Search: the same greedy path, the same counts (accuracies) and loss sums.
    for bn in ("online", "recalibrate"):
        path_a, path_b = one[f"search_{bn}"], two[f"search_{bn}"]
        assert len(path_a) == ddp_worker.SEARCH_STEPS + 1 == len(path_b)
        assert [p["channels"] for p in path_a] == [p["channels"] for p in path_b]
        assert [p["accuracy"] for p in path_a] == [p["accuracy"] for p in path_b]
        assert [p["loss"] for p in path_a] == pytest.approx([p["loss"] for p in path_b], abs=1e-9)
        assert [p["calibrated_loss"] for p in path_a] == pytest.approx([p["calibrated_loss"] for p in path_b], abs=1e-9)


@needs_fashion_mnist
def test_shards_cover_every_batch_once_with_the_same_augmentation(data_dir):
    train = load_split(data_dir / "search" / "train.pt")
    batch = 100  # 1080 images: 10 full batches and a partial one of 80

    def batches(shard, drop_last):
        generator = torch.Generator().manual_seed(3)
        out = list(train.batches(batch, shuffle=True, augment=True, generator=generator, drop_last=drop_last, shard=shard))
        return out, generator.get_state()

    for drop_last in (True, False):
        whole, state = batches((0, 1), drop_last)
        parts = [batches((rank, 3), drop_last) for rank in range(3)]
        assert all(torch.equal(s, state) for _, s in parts)  # every rank's generator moves alike
        assert len(whole) == (10 if drop_last else 11)
        for index, (x, y) in enumerate(whole):
            shares = [part[index] for part, _ in parts]
            assert [len(sy) for _, sy in shares] == [len(y) // 3 + (r >= 3 - len(y) % 3) for r in range(3)]
            assert torch.equal(torch.cat([sx for sx, _ in shares]), x)
            assert torch.equal(torch.cat([sy for _, sy in shares]), y)


def test_world_shares_batches_whole_or_split():
    batches = [(torch.arange(n).float(), torch.arange(n)) for n in (4, 4, 3)]
    assert [len(y) for _, y in World(rank=1, size=2).share_batches(batches)] == [4]
    assert [len(y) for _, y in World(rank=0, size=2).share_batches(batches)] == [4, 3]
    split = World(rank=3, size=4).share_batches(batches[:1] + [(torch.zeros(2), torch.zeros(2))])
    assert [len(y) for _, y in split] == [1, 1]  # fewer batches than ranks: a slice of each
    assert World(rank=0, size=4).share_batches([(torch.zeros(2), torch.zeros(2))]) == []


def test_resources_are_validated(tmp_path):
    def params(resources: dict):
        path = tmp_path / "params.yaml"
        path.write_text(yaml.safe_dump({"resources": resources}))
        return load_params(path)

    assert params({"nproc": "auto"}).resources.nproc == "auto"
    assert params({"nproc": 4, "nnodes": 2, "rdzv_endpoint": "node0:29400"}).resources.nnodes == 2
    with pytest.raises(SlimnetError, match="resources.nproc"):
        params({"nproc": "two"})
    with pytest.raises(SlimnetError, match="rdzv_endpoint"):
        params({"nnodes": 2})
    with pytest.raises(SlimnetError, match="supernet.batch_size .* smaller than the 8 processes"):
        check_batches(ResourcesParams(nproc=8), **{"supernet.batch_size": 4})


def rank_pid(parent: int, rank: int) -> int | None:
    """The pid of torchrun's rank ``rank`` among the children of the launching process."""
    try:
        children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
    except FileNotFoundError:
        return None
    for child in children:
        try:
            environ = Path(f"/proc/{child}/environ").read_bytes().split(b"\0")
        except (FileNotFoundError, PermissionError):
            continue
        if f"RANK={rank}".encode() in environ:
            return int(child)
    return None


@needs_fashion_mnist
@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="finds the ranks through /proc")
def test_a_killed_rank_stops_the_stage_and_the_next_run_resumes(data_dir, tmp_path):
    (tmp_path / "data").symlink_to(data_dir)
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["model"].update(arch="resnet18", width=0.25, cifar=True)
    params["transfer"].update(width=0.5, depth=0.5, resolution=14, data_fraction=1.0)
    params["supernet"].update(epochs=2, batch_size=64, groups=4, eval_images=128, warmup_epochs=0.0, samples=1)
    params["resources"].update(nproc=2)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "slimnet", "supernet"]
    stage = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    checkpoints = tmp_path / ".checkpoints" / "supernet"
    deadline = time.monotonic() + 240
    while not any(checkpoints.glob("*.pt")) and stage.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)  # the first epoch's checkpoint: rank 1 is now in epoch 2
    victim = rank_pid(stage.pid, 1)
    assert victim is not None, stage.communicate()[1][-2000:]
    os.kill(victim, signal.SIGKILL)
    _, stderr = stage.communicate(timeout=120)
    assert stage.returncode == 1
    lines = stderr.strip().splitlines()
    assert lines[-1].startswith("error: supernet: rank 1 of 2 was killed by SIGKILL, which stopped every rank")
    assert "Traceback" not in stderr
    saved = [torch.load(p, weights_only=False) for p in checkpoints.glob("*.pt")]
    assert [s["epoch"] for s in saved] == [1]
    assert not (tmp_path / "stages" / "supernet" / "supernet.pt").exists()

    # The next run resumes, here on one process: the checkpoint does not depend on their number.
    params["resources"].update(nproc=1)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    again = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "supernet: resuming after epoch 1/2" in again.stderr
    assert (tmp_path / "stages" / "supernet" / "supernet.pt").is_file()
    assert not any(checkpoints.glob("*.pt"))  # cleared once the outputs exist


def test_one_process_runs_with_resources_threads(monkeypatch):
    # The single-process path honours resources.threads like torchrun's ranks do, so 1 process
    # with threads: 1 does each rank's arithmetic (see docs/distributed.md, "What stays equal across N").
    from slimnet.pipeline.ranks import stage_processes

    monkeypatch.delenv("LOCAL_RANK", raising=False)
    before = torch.get_num_threads()
    try:
        with stage_processes(ResourcesParams(nproc=1, threads=1), ["search"], "cpu") as rank:
            assert rank is not None and rank[0].size == 1
            assert torch.get_num_threads() == 1
        with stage_processes(ResourcesParams(nproc=1), ["search"], "cpu") as rank:
            assert torch.get_num_threads() == 1  # "auto" leaves the process as it is
    finally:
        torch.set_num_threads(before)
