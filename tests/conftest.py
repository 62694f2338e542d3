import sys
from pathlib import Path

import pytest
import torch

# Make the package importable when pytest is run as `pytest` (not `python -m pytest`) without an install.
ROOT = str(Path(__file__).resolve().parents[1])
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


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
