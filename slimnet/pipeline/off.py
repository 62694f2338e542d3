"""The stages a setting switches off, and the record each writes then.

Decided from params.yaml alone and written without torch: the CLI asks here before it imports a
stage, so a switched-off stage takes a fraction of a second instead of torch's start-up (the
other optimizers' stages on every run, the diagnostics and the slimmable network by default).
A record is the same bytes every time, so switching a setting back and forth reruns nothing twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from slimnet import atomic
from slimnet.config import Params
from slimnet.console.output import print_summary
from slimnet.pipeline.common import STAGES, SUPERNET_METHODS
from slimnet.training.live import write_empty
from slimnet.training.no_network import write_no_network

SLIMMABLE_OFF_NOTE = "off: set slimmable.targets (e.g. [4M, 6M, 8M]) to train one network for them"


@dataclass(frozen=True)
class Off:
    """What a switched-off stage writes in its folder."""

    reason: str  # in the user's keys, e.g. "search.method is morphnet"
    record: dict = field(default_factory=lambda: {"enabled": False})  # its metrics.json
    network: str | None = None  # the network file it would train: a placeholder saying why not
    live: bool = False  # a training stage: an empty live folder, so DVC's plots find one


def switched_off(stage: str, p: Params) -> Off | None:
    """Why ``stage`` does no work with these params, and what it writes instead; None when it runs."""
    method = p.search.method
    if stage == "supernet" and method not in SUPERNET_METHODS:
        return Off(f"search.method is {method}", network="supernet.pt", live=True)
    if stage in ("morphnet", "dmcp") and method != stage:
        return Off(f"search.method is {method}", network="network.pt", live=True)
    if stage == "alone" and not p.diagnostics.alone:
        return Off("diagnostics.alone is false")
    if stage == "stability" and not p.diagnostics.stability:
        return Off("diagnostics.stability is false")
    if stage == "slimmable" and not p.slimmable.targets:
        return Off("slimmable.targets is empty", {"targets": [], "note": SLIMMABLE_OFF_NOTE}, network="model.pt", live=True)
    return None


def write_off(off: Off, out_dir: Path) -> dict:
    """The stage's outputs when it is off: the record, and the placeholder and live folder it declares."""
    if off.network is not None:
        write_no_network(out_dir / off.network, off.reason)
    if off.live:
        write_empty(out_dir / "live")
    atomic.write_json(out_dir / "metrics.json", off.record)
    return off.record


def run_if_off(stage: str, p: Params) -> bool:
    """Write and print ``stage``'s record when these params switch it off; whether they did."""
    off = switched_off(stage, p)
    if off is None:
        return False
    print_summary(stage, write_off(off, STAGES / stage))
    return True
