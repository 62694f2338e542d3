"""plan stage: whether search.method trains the supernet, as the file the supernet stage reads.

The supernet stage depends on this file instead of on search.method. AutoSlim and DMCP both
start from the sandwich-trained supernet, so they write the same bytes here, and switching
between them keeps the trained supernet where depending on search.method trained it again, to
the same bytes (hours on the GPU presets). MorphNet trains its own network: the file says so and
the supernet stage writes its record instead.
"""

from __future__ import annotations

from pathlib import Path

from slimnet import atomic
from slimnet.config import Params
from slimnet.console.output import print_summary
from slimnet.pipeline.common import STAGES
from slimnet.pipeline.off import switched_off

SUPERNET_PLAN = STAGES / "plan" / "supernet.json"


def supernet_plan(p: Params) -> dict:
    """``{"off": null}`` when search.method trains from the supernet, else why it does not."""
    off = switched_off("supernet", p)
    return {"off": None if off is None else off.reason}


def run_plan(p: Params, out: Path = SUPERNET_PLAN) -> dict:
    plan = supernet_plan(p)
    atomic.write_json(out, plan)
    return plan


def command(p: Params) -> None:
    """`python -m slimnet plan`: write the supernet's plan, print it."""
    print_summary("plan", run_plan(p))
