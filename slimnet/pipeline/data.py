"""data stage: the full splits and the projected search split under data/."""

from __future__ import annotations

from pathlib import Path

from slimnet.config import DataParams, TransferParams
from slimnet.data import prepare_data
from slimnet.pipeline.common import DATA


def run_data(data: DataParams, transfer_params: TransferParams, out_dir: Path = DATA) -> dict:
    resolution = data.resolution
    if data.source == "imagefolder" and resolution is None:
        resolution = 224
    return prepare_data(
        data.source,
        Path(data.root),
        out_dir,
        val_fraction=data.val_fraction,
        resolution=resolution,
        search_resolution=transfer_params.resolution,
        search_fraction=transfer_params.data_fraction,
        seed=data.seed,
        fraction=data.fraction,
    )
