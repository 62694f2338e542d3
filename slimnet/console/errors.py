import os
from pathlib import Path

# Where data-parallel ranks leave their one-line errors for the process that launched them
# (slimnet/pipeline/ranks.py), which prints one line instead of one per rank.
RANK_ERRORS = "SLIMNET_RANK_ERRORS"


class SlimnetError(Exception):
    """A user-facing error: the message is one line naming the problem and how to fix it."""


def leave_for_launcher(message: str) -> bool:
    """In a rank launched by a stage command: store ``message`` for the launcher; False elsewhere."""
    directory = os.environ.get(RANK_ERRORS)
    if not directory or "RANK" not in os.environ:
        return False
    Path(directory, f"{int(os.environ['RANK']):06d}").write_text(message)
    return True
