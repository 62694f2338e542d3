"""What an optimizer's training stage writes when search.method selects another optimizer."""

from __future__ import annotations

from pathlib import Path

from slimnet import atomic
from slimnet.training.live import write_empty


def write_not_selected(network: Path, method: str) -> dict:
    """A network file that holds none (readers say so in one line), empty live curves and
    ``{"enabled": false}``; the same bytes every time, so switching methods back and forth reruns
    nothing twice."""
    record = {"enabled": False}
    atomic.save_torch(network, {"not_trained": f"search.method is {method}"})
    write_empty(network.parent / "live")
    atomic.write_json(network.parent / "metrics.json", record)
    return record
