"""The file a switched-off stage leaves where its network would be: one line of JSON saying why.

DVC needs every declared output to exist, and a reader of a network file needs to say, in one
line, that there is no network and why. The line is written without torch, so a switched-off
stage need not import it, and torch's archives (zip files, starting "PK") never begin with it.
"""

from __future__ import annotations

import json
from pathlib import Path

from slimnet import atomic

_KEY = "no_network"
_HEAD = b'{"' + _KEY.encode() + b'"'


def write_no_network(path: Path, reason: str) -> None:
    """Write the placeholder: the same bytes for the same reason."""
    atomic.write_text(path, json.dumps({_KEY: reason}) + "\n")


def no_network_reason(path: Path) -> str | None:
    """Why ``path`` holds no network; None when it is not such a placeholder (a network file)."""
    with open(path, "rb") as f:
        if f.read(len(_HEAD)) != _HEAD:
            return None
    return json.loads(Path(path).read_text())[_KEY]
