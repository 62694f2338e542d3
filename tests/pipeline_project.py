"""The tiny DVC project the pipeline tests run: every stage through `dvc repro` on a slice of
Fashion-MNIST. It is built once per test session (one `dvc repro` of every stage, shared by the
xdist workers through a file lock) and each pipeline test file works on its own copy, so the
files can run on different workers and change params without seeing each other's changes."""

from __future__ import annotations

import compileall
import hashlib
import json
import os
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import yaml
from filelock import FileLock

REPO = Path(__file__).resolve().parents[1]

# The tiny project's budgets: its full network costs 3.84 MFLOPs at 16x16 (mobilenet_v2 x0.35,
# CIFAR stem). 16x16 rather than the images' 28x28: every training a pipeline test runs costs
# about half (measured 2026-12-06: the build took 99 s against 138 s at 28x28, back to back).
BUDGET, BUDGET_FLOPS = "2.5M", 2_500_000
OTHER_BUDGET, OTHER_BUDGET_FLOPS = "2M", 2_000_000

TINY = {
    "data": {"fraction": 0.02, "resolution": 16},
    "model": {"arch": "mobilenet_v2", "width": 0.35, "cifar": True},
    "transfer": {"width": 0.5, "depth": 0.5, "resolution": 12, "data_fraction": 0.5},
    "supernet": {"epochs": 1, "batch_size": 64, "groups": 4, "eval_images": 128, "warmup_epochs": 0.0},
    "morphnet": {"epochs": 1, "batch_size": 64, "warmup_epochs": 0.0},
    "dmcp": {"epochs": 1, "batch_size": 64, "warmup_epochs": 0.0},
    # 30 of the 60 held-out images: a second sample fits beside them (the stability diagnostic's).
    "search": {"flops": BUDGET, "eval_images": 30, "batch_size": 128, "floor": 0.0},
    "extrapolate": {"random_draws": [0, 1]},
    # lr is per 256 images: 0.8 is 0.1 at batch 32. At the default 0.1 (0.0125 here) two epochs
    # left every network near chance (14-24%) and a slimmable width at or below 10% on one CPU.
    # One epoch at 0.8 gives 30-46% at 16x16 (40-55% at 28x28; measured 2026-12-06): clear of
    # chance, half the time.
    "train": {
        "epochs": 1,
        "batch_size": 32,
        "lr": 0.8,
        "warmup_epochs": 0.0,
        "seeds": [0],
        "variants": ["optimized", "uniform", "random"],
    },
    "latency": {"repeats": 2},
    "evaluate": {"latency_runs": 3},
    # One thread per stage: the test files run side by side, one per core.
    "resources": {"threads": 1},
}

NETWORKS = ("optimized", "uniform", "random-0", "random-1")  # TINY's random_draws
# What switching the optimizer and back must give back byte for byte (the networks from DVC's run-cache).
SWITCHED_STAGES = ("supernet", "search", "extrapolate", "train@optimized-0", "evaluate")


def dvc(project: Path, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "dvc", *args],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=1800,  # a guard against a hang: a repro here takes 1-3 minutes, more on a loaded machine
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


def slimnet_in(project: Path, *args: str):
    """`python -m slimnet ARGS` run in ``project`` by this process (typer's CliRunner): a stage's
    checks without a process start-up (2 s of torch's import). Its stdout, stderr and exit code
    are the command's; test_data_stages.py checks the same exit from a real process."""
    import torch
    from typer.testing import CliRunner

    from slimnet.cli import app

    here, threads = Path.cwd(), torch.get_num_threads()
    os.chdir(project)
    try:
        return CliRunner().invoke(app, list(args))
    finally:
        os.chdir(here)
        torch.set_num_threads(threads)  # a stage that runs sets resources.threads


def set_params(project: Path, overrides: dict) -> None:
    params = yaml.safe_load((project / "params.yaml").read_text())
    for section, values in overrides.items():
        params[section].update(values)
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def load(project: Path, path: str) -> dict:
    return json.loads((project / path).read_text())


def changed_stages(status: str) -> list[str]:
    """The stages `dvc status` lists, less scan: it is always changed (`dvc repro` always rescans
    the source; `data` reruns only when the scan's output changes)."""
    stages = [line[:-1] for line in status.splitlines() if line.endswith(":") and not line[0].isspace()]
    return [stage for stage in stages if stage != "scan"]


def stale_stages(project: Path) -> list[str]:
    """What `dvc status` lists, less scan, asked through DVC's Python API: the same check without
    starting Python and importing DVC for it (about 0.7 s a call, some 30 calls a session)."""
    from dvc.repo import Repo

    with Repo(str(project)) as repo:
        # Named as the CLI would name them from the working directory: "<path>/dvc.yaml:<stage>".
        stages = [name.rsplit("dvc.yaml:", 1)[-1] for name in repo.status()]
    return [stage for stage in stages if stage != "scan"]


def out_hashes(project: Path, stage: str) -> dict[str, str]:
    """md5 of every output of a stage, read from the files themselves (not from dvc.lock)."""
    lock = yaml.safe_load((project / "dvc.lock").read_text())["stages"][stage]
    hashes = {}
    for out in lock["outs"]:
        path = project / out["path"]
        files = sorted(path.rglob("*")) if path.is_dir() else [path]
        for file in files:
            if file.is_file():
                hashes[file.relative_to(project).as_posix()] = hashlib.md5(file.read_bytes()).hexdigest()
    return hashes


def without_code_deps(pipeline: dict) -> dict:
    """dvc.yaml's stages with the data they read and none of the slimnet files they run.

    The copy's code never changes during a session, so those deps never decide a rerun here
    (tests/test_stage_deps.py checks them against each stage's imports). They are two thirds of
    dvc.lock, which DVC parses and rewrites for every stage it runs: 0.4 s a stage run less
    (measured 2026-12-06, `dvc repro -f -s report extrapolate` in the built project, 2,943 -> 977
    lines of dvc.lock)."""
    stages = {}
    for name, stage in pipeline["stages"].items():
        data = [dep for dep in stage.get("deps", []) if not dep.startswith("slimnet/")]
        stages[name] = {key: data if key == "deps" else value for key, value in stage.items() if key != "deps" or data}
    return {**pipeline, "stages": stages}


SERVER_VARIABLE = "SLIMNET_STAGE_SERVER"  # read by tests/stage_client.py


@contextmanager
def stage_server() -> Iterator[None]:
    """A preloaded Python for the tiny project's stages while the block runs (tests/stage_server.py):
    each stage process starts without importing torch again. Where processes cannot fork or pass
    file descriptors (not POSIX), the stages run as plain processes."""
    if not hasattr(os, "fork") or not hasattr(socket, "send_fds"):
        yield
        return
    folder = tempfile.mkdtemp(prefix="slimnet-stages-")  # short: a socket's path has a 108-byte limit
    path = os.path.join(folder, "socket")
    server = subprocess.Popen([sys.executable, str(REPO / "tests" / "stage_server.py"), path], stdout=subprocess.PIPE, text=True)
    previous = os.environ.get(SERVER_VARIABLE)
    try:
        assert server.stdout is not None and server.stdout.readline().strip() == "ready", "the stage server did not start"
        os.environ[SERVER_VARIABLE] = path
        yield
    finally:
        if previous is None:
            os.environ.pop(SERVER_VARIABLE, None)
        else:
            os.environ[SERVER_VARIABLE] = previous
        server.terminate()
        server.wait()
        shutil.rmtree(folder, ignore_errors=True)


def through_stage_client(pipeline: dict) -> dict:
    """dvc.yaml's stages with `python -m slimnet` run through tests/stage_client.py (the same
    command, from a preloaded Python when a stage server is set)."""
    client = f"python {shlex.quote(str(REPO / 'tests' / 'stage_client.py'))}"
    stages = {}
    for name, stage in pipeline["stages"].items():
        assert stage["cmd"].startswith("python -m slimnet "), stage["cmd"]
        stages[name] = {**stage, "cmd": client + stage["cmd"][len("python -m slimnet") :]}
    return {**pipeline, "stages": stages}


def build(root: Path) -> None:
    """slimnet's stages, dvc.yaml (less its code deps) and params.yaml (set to TINY) in a fresh DVC
    project, reproduced."""
    shutil.copytree(REPO / "slimnet", root / "slimnet", ignore=shutil.ignore_patterns("__pycache__"))
    # Bytecode for the copy, which every stage process imports: where PYTHONDONTWRITEBYTECODE is
    # set (this VM), each would compile the modules it imports again (about 0.1 s a stage).
    compileall.compile_dir(root / "slimnet", quiet=1)
    shutil.copy(REPO / "params.yaml", root / "params.yaml")
    pipeline = through_stage_client(without_code_deps(yaml.safe_load((REPO / "dvc.yaml").read_text())))
    (root / "dvc.yaml").write_text(yaml.safe_dump(pipeline, sort_keys=False))
    dvc(root, "init", "--no-scm", "-q")
    shutil.copy(REPO / ".dvcignore", root / ".dvcignore")
    set_params(root, TINY)
    with stage_server():
        dvc(root, "repro")


def shared_base(session_dir: Path) -> Path:
    """The reproduced project, built by whichever worker asks first; the others wait for it."""
    base = session_dir / "pipeline-base"
    with FileLock(str(session_dir / "pipeline-base.lock")):
        if not (session_dir / "pipeline-base.done").exists():
            shutil.rmtree(base, ignore_errors=True)
            base.mkdir()
            build(base)
            (session_dir / "pipeline-base.done").touch()
    return base


def copy_project(base: Path, destination: Path) -> Path:
    """A working copy of the reproduced project (its DVC cache and run-cache included)."""
    shutil.copytree(base, destination, symlinks=True)
    assert stale_stages(destination) == []
    return destination
