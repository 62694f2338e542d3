import os
import sys
from pathlib import Path

import pytest
import torch

# Make the package importable when pytest is run as `pytest` (not `python -m pytest`) without an install.
ROOT = str(Path(__file__).resolve().parents[1])
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

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
    from tests.pipeline_project import copy_project

    return copy_project(pipeline_base, tmp_path_factory.mktemp("project") / "tiny")


# The order test files reach the xdist workers (pyproject: --dist loadfile --no-loadscope-reorder):
# the file that builds the shared tiny project first, so one worker builds it while the other
# runs the other slow files; then the files that copy the project, longest first; the fast files
# last, filling whatever one worker has left when the other is done.
_PIPELINE_COPIES = (
    "test_pipeline_optimizers.py",
    "test_pipeline_reruns.py",
    "test_pipeline_slimmable.py",
    "test_pipeline_diagnostics.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    slow_files = {item.path for item in items if item.get_closest_marker("slow")}

    def rank(item: pytest.Item) -> tuple[int, int]:
        name = item.path.name
        if name == "test_pipeline.py":
            return (0, 0)
        if name in _PIPELINE_COPIES:
            return (2, _PIPELINE_COPIES.index(name))
        return (1, 0) if item.path in slow_files else (3, 0)

    items.sort(key=rank)  # stable: within a rank, files and tests keep their collected order
