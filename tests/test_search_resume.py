"""A search killed midway (SIGKILL) resumes from its last committed step and writes the bytes an
unbroken search writes: the trajectory is checkpointed after every step, and the resumed search
commits the checkpointed configurations again in turn (no candidate scored), which leaves its
evaluator exactly where the unbroken search's was."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from slimnet.config import SearchParams
from slimnet.datasets.load import fixed_batches, load_split
from slimnet.optimizers.autoslim import CandidateEvaluator, greedy_slim
from slimnet.optimizers.trajectory import TrajectoryPoint
from slimnet.pipeline.search import SearchCheckpoint, search_key
from slimnet.space.spec import uniform_spec
from slimnet.training.sandwich import build_space, build_supernet, save_supernet_file
from tests.realdata import needs_fashion_mnist, prepare_fashion_slice, small_resnet_reference

pytestmark = [needs_fashion_mnist, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]
# Depthwise blocks, expand widths and stages cut at the next block: every kind of resume point.
MOBILENET = uniform_spec(
    "mobilenet_v2", 0.25, resolution=16, num_classes=10, in_channels=1, cifar=True, depth=(1, 2, 2, 1, 1, 1, 1), divisor=2
)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return prepare_fashion_slice(tmp_path_factory.mktemp("fashion"), fraction=0.05, search_resolution=16)


def supernet(reference, seed: int = 0):
    space = build_space(reference, min_width=0.25, max_width=1.0, groups=4, divisor=2)
    torch.manual_seed(seed)
    return build_supernet(space).to(memory_format=torch.channels_last), space


@pytest.mark.parametrize(("arch", "bn"), [("mobilenet_v2", "online"), ("resnet18", "recalibrate")])
def test_a_resumed_search_replays_to_the_unbroken_searchs_points(data_dir, single_thread, arch, bn):
    reference = MOBILENET if arch == "mobilenet_v2" else small_resnet_reference(16)
    network, space = supernet(reference)
    calib = fixed_batches(load_split(data_dir / "search" / "train.pt"), 64, 64, 0)
    evals = fixed_batches(load_split(data_dir / "search" / "val.pt"), 128, 64, 1)

    def search(resume=None, saved=None):
        evaluator = CandidateEvaluator(network, space, calib, evals, bn=bn)
        on_step = None if saved is None else (lambda points: saved.append(list(points)))
        points = greedy_slim(evaluator, reference=reference, criterion="loss", max_steps=24, resume=resume, on_step=on_step)
        return points, evaluator.evaluations

    saved: list = []
    unbroken, evaluations = search(saved=saved)
    assert [len(points) for points in saved] == list(range(2, len(unbroken) + 1))  # after every step
    steps = len(unbroken) - 1
    for done in (steps // 3, steps):  # midway; after the last step (nothing left to score)
        resumed, resumed_evaluations = search(resume=unbroken[: done + 1])
        # Rounded fields would hide last-bit differences; the margins (9 decimals) and the
        # choices downstream of them do not, over this many steps.
        assert [p.model_dump_json() for p in resumed] == [p.model_dump_json() for p in unbroken], done
        assert resumed_evaluations == evaluations


def test_the_checkpoint_key_covers_what_the_trajectory_depends_on(data_dir, tmp_path):
    network, space = supernet(MOBILENET)
    save_supernet_file(tmp_path / "a.pt", network, MOBILENET, space)
    network, space = supernet(MOBILENET, seed=1)
    save_supernet_file(tmp_path / "b.pt", network, MOBILENET, space)
    val = load_split(data_dir / "search" / "val.pt")
    params = SearchParams(flops="6M", eval_images=64, calib_images=64, batch_size=64)
    calib, evals = fixed_batches(val, 64, 64, 0), fixed_batches(val, 64, 64, 1)
    key = search_key(tmp_path / "a.pt", params, calib, evals)
    assert key == search_key(tmp_path / "a.pt", params, calib, [(x.clone(), y.clone()) for x, y in evals])
    assert key == search_key(tmp_path / "a.pt", params.model_copy(update={"flops": 5_000_000}), calib, evals)  # a budget
    assert key != search_key(tmp_path / "b.pt", params, calib, evals)
    assert key != search_key(tmp_path / "a.pt", params.model_copy(update={"criterion": "loss"}), calib, evals)
    assert key != search_key(tmp_path / "a.pt", params, calib, fixed_batches(val, 64, 64, 2))
    # Every search param DVC reruns the stage for is in the key, and no other.
    stage = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]["search"]
    keyed = set(params.model_dump(exclude={"flops", "params", "latency", "memory"}))
    assert {name.removeprefix("search.") for name in stage["params"]} == keyed


def test_an_unreadable_checkpoint_is_discarded_with_a_warning(tmp_path, capsys):
    checkpoint = SearchCheckpoint("key", tmp_path)
    assert checkpoint.load() == ([], 0.0)
    checkpoint.path.write_text('{"points": [{"step": 0')
    assert checkpoint.load() == ([], 0.0)
    assert "search checkpoint" in capsys.readouterr().err


def write_problem(work: Path, data_dir: Path, nproc: int = 1) -> dict:
    """A search stage's inputs in ``work``: the data, a supernet (untrained: every candidate still
    scores differently) and params.yaml; one thread per process, so every run does the same arithmetic."""
    work.mkdir()
    (work / "data").symlink_to(data_dir)
    network, space = supernet(MOBILENET)
    save_supernet_file(work / "stages" / "supernet" / "supernet.pt", network, MOBILENET, space)
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    # Two held-out batches: with two processes each scores one.
    params["search"].update(
        criterion="loss", bn="recalibrate", eval_images=128, calib_images=64, batch_size=64, floor=0.3, seed=0
    )
    params["resources"].update(nproc=nproc, threads=1)
    (work / "params.yaml").write_text(yaml.safe_dump(params))
    return params


ENV = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
COMMAND = [sys.executable, "-m", "slimnet", "search"]


def search(work: Path) -> subprocess.CompletedProcess:
    run = subprocess.run(COMMAND, cwd=work, env=ENV, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    return run


def resumed_lines(run: subprocess.CompletedProcess) -> list[str]:
    return [line for line in run.stderr.splitlines() if line.startswith("search: resuming")]


def outputs(work: Path) -> dict[str, bytes]:
    return {
        name: (work / "stages" / "search" / name).read_bytes() for name in ("trajectory.json", "metrics.json", "trajectory.csv")
    }


@pytest.fixture(scope="module")
def unbroken(data_dir, tmp_path_factory) -> dict[str, bytes]:
    work = tmp_path_factory.mktemp("search") / "unbroken"
    write_problem(work, data_dir)
    assert resumed_lines(search(work)) == []
    assert not any((work / ".checkpoints" / "search").glob("*"))  # removed once the outputs exist
    return outputs(work)


def steps_saved(checkpoints: Path) -> int:
    for path in checkpoints.glob("*.json"):
        try:
            return len(json.loads(path.read_text())["points"]) - 1
        except (OSError, ValueError):
            pass  # replaced between glob and read
    return 0


def test_a_search_killed_midway_resumes_and_writes_the_unbroken_bytes(data_dir, unbroken, tmp_path):
    total = len(json.loads(unbroken["trajectory.json"])["points"]) - 1
    work = tmp_path / "broken"
    write_problem(work, data_dir)
    stage = subprocess.Popen(COMMAND, cwd=work, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    checkpoints = work / ".checkpoints" / "search"
    deadline = time.monotonic() + 120
    while steps_saved(checkpoints) < total // 3 and stage.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    os.kill(stage.pid, signal.SIGKILL)
    stage.communicate(timeout=60)
    assert stage.returncode == -signal.SIGKILL
    killed_at = steps_saved(checkpoints)
    assert 0 < killed_at < total  # midway
    assert not (work / "stages" / "search" / "trajectory.json").exists()

    again = search(work)
    assert [line.split(" (")[0] for line in resumed_lines(again)] == [f"search: resuming after step {killed_at}"]
    assert outputs(work) == unbroken
    assert not any(checkpoints.glob("*"))


def test_two_processes_resume_from_the_same_step(data_dir, unbroken, tmp_path):
    """Under torchrun every rank reads the checkpoint (rank 0 wrote it) and replays the same
    commits; with one thread per process and one held-out batch per rank, the two processes'
    trajectory is one process's, byte for byte."""
    work = tmp_path / "ranks"
    params = write_problem(work, data_dir, nproc=2)
    points = json.loads(unbroken["trajectory.json"])["points"]
    done = len(points) - 3  # two steps left to search
    search_params = SearchParams(**params["search"])
    calib = fixed_batches(load_split(work / "data" / "search" / "train.pt"), 64, 64, 0)
    evals = fixed_batches(load_split(work / "data" / "search" / "val.pt"), 128, 64, 1)
    key = search_key(work / "stages" / "supernet" / "supernet.pt", search_params, calib, evals)
    checkpoint = SearchCheckpoint(key, work / ".checkpoints" / "search")
    checkpoint.save([TrajectoryPoint.model_validate(p) for p in points[: done + 1]], 1.0)

    again = search(work)
    assert [line.split(" (")[0] for line in resumed_lines(again)] == [f"search: resuming after step {done}"]
    assert outputs(work) == unbroken
    assert not checkpoint.path.exists()
