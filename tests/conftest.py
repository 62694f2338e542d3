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
