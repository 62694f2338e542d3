"""project stage: the search splits under data/search/, from transfer.resolution and transfer.data_fraction.

Reads only data/full and data/meta.json: a new projection never touches the full splits, so it
never reruns the from-scratch training.
"""

from __future__ import annotations

from pathlib import Path

from slimnet.config import Params, TransferParams
from slimnet.console.output import print_summary
from slimnet.datasets.projection import project_search
from slimnet.pipeline.data_paths import DATA
from slimnet.pipeline.specs import check_network, dataset_resolution


def run_project(transfer_params: TransferParams, data_dir: Path = DATA) -> dict:
    return project_search(data_dir, resolution=transfer_params.resolution, fraction=transfer_params.data_fraction)


def command(p: Params) -> None:
    """`python -m slimnet project`: write the projected search splits, print the summary."""
    check_network(p, dataset_resolution())
    print_summary("project", run_project(p.transfer))
