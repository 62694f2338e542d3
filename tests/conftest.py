import sys
from pathlib import Path

# Make the package importable when pytest is run as `pytest` (not `python -m pytest`) without an install.
ROOT = str(Path(__file__).resolve().parents[1])
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
