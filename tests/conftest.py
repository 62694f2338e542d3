import os
import sys
from pathlib import Path

import pytest
import torch

# Make the package importable when pytest is run as `pytest` (not `python -m pytest`) without an install.
ROOT = str(Path(__file__).resolve().parents[1])
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

# DVC's CLI sends usage analytics from a daemon it starts after every command, about 0.5 s of CPU
# each (measured 2026-12-07, five `dvc status` with and without): a test run has none to send.
os.environ.setdefault("DVC_NO_ANALYTICS", "1")

# Under xdist each worker is a process: the cores are split between them (and the stages they
# start inherit the share), where each one's OpenMP threads would otherwise spin against the others'.
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _WORKERS > 1:
    _SHARE = max(1, (os.cpu_count() or 1) // _WORKERS)
    os.environ.setdefault("OMP_NUM_THREADS", str(_SHARE))
    torch.set_num_threads(_SHARE)


@pytest.fixture(scope="module")
def single_thread():
    """One intra-op thread: small CPU forwards on a shared 2-core machine stall badly when
    OpenMP's spinning threads compete with other processes."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def pipeline_base(tmp_path_factory, worker_id):
    """The tiny pipeline project reproduced once per session (tests/pipeline_project.py); every
    xdist worker of the session shares the one its first asker built."""
    from tests.pipeline_project import shared_base

    session_dir = tmp_path_factory.getbasetemp()
    return shared_base(session_dir if worker_id == "master" else session_dir.parent)


@pytest.fixture(scope="module")
def project(pipeline_base, tmp_path_factory):
    """The pipeline test file's own copy of the reproduced tiny project (each module its own)."""
    from tests.pipeline_project import copy_project, stage_server

    with stage_server():  # the module's own: its runs' hash seed is not the build's
        yield copy_project(pipeline_base, tmp_path_factory.mktemp("project") / "tiny")


# The order test files reach the xdist workers (pyproject: --dist loadfile --no-loadscope-reorder).
# xdist hands a worker its next file as soon as it has two tests or fewer left, so a worker that
# starts a one-test file queues the next file behind it at once. The order:
# 1. the file that builds the shared tiny project;
# 2. slow files that take about as long as the build, for the other worker meanwhile;
# 3. the files that copy the project, longest first, each followed by a quick many-test file,
#    so the file a worker queues behind a long copy is a quick one and the other worker takes
#    the next copy (measured 2026-12-06: without the quick files one worker queued two copies,
#    ran 176 s after the other was done, and the suite took 9 min 32 s);
# 4. the other slow files, then the fast ones, filling the end on both workers.
_BUILDER = "test_pipeline.py"
_BESIDE_THE_BUILD = ("test_ddp.py", "test_search_resume.py", "test_search.py", "test_data_stages.py", "test_cpu_conv_bug.py")
_PIPELINE_COPIES = (
    "test_pipeline_optimizers.py",
    "test_pipeline_reruns.py",
    "test_pipeline_diagnostics.py",
    "test_pipeline_slimmable.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    files = list(dict.fromkeys(item.path for item in items))  # in collected order
    by_name = {path.name: path for path in files}
    slow = {item.path for item in items if item.get_closest_marker("slow")}
    tests = {path: sum(item.path == path for item in items) for path in files}

    def named(names: tuple[str, ...]) -> list[Path]:
        return [by_name[name] for name in names if name in by_name]

    quick = [path for path in files if path not in slow and tests[path] >= 3]
    order = named((_BUILDER,)) + named(_BESIDE_THE_BUILD)
    for copy in named(_PIPELINE_COPIES):
        order += [copy] + quick[:1]
        quick = quick[1:]
    order += [path for path in files if path in slow and path not in order]
    order += [path for path in files if path not in order]
    position = {path: index for index, path in enumerate(order)}
    items.sort(key=lambda item: position[item.path])  # stable: a file's tests keep their order
