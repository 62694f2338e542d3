"""data stage: the full train/val/test splits and data/meta.json, from data.* params only."""

from __future__ import annotations

import json
from pathlib import Path

from slimnet.config import DataParams, Params
from slimnet.console.errors import SlimnetError
from slimnet.console.output import out, print_summary
from slimnet.console.progress import reporter
from slimnet.datasets.fingerprint import scan_source
from slimnet.datasets.prepare import InvalidImages, prepare_full
from slimnet.pipeline.data_paths import DATA, SOURCE


def run_data(data: DataParams, out_dir: Path = DATA, source_manifest: Path = SOURCE) -> dict:
    """Prepare the splits from exactly what the scan stage fingerprinted (checked, not assumed)."""
    if not source_manifest.is_file():
        raise SlimnetError(f"{source_manifest} not found: run `python -m slimnet scan` first (`dvc repro` runs both)")
    scan = scan_source(data.source, Path(data.root))
    if scan.manifest != json.loads(source_manifest.read_text()):
        raise SlimnetError(
            f"{data.root} ({data.source}) is not what {source_manifest} describes: it changed since the scan; run `dvc repro` again"
        )
    with reporter() as report:
        try:
            return prepare_full(
                data.source,
                Path(data.root),
                out_dir,
                val_fraction=data.val_fraction,
                resolution=data.resolution,
                seed=data.seed,
                fraction=data.fraction,
                skip_invalid=data.skip_invalid,
                listing=scan.listing,
                report=report,
            )
        except InvalidImages as err:
            raise SlimnetError(f"{err}; remove or replace them, or set data.skip_invalid: true to leave them out") from None


def command(p: Params) -> None:
    """`python -m slimnet data`: prepare the splits, print the summary and the images left out."""
    summary = run_data(p.data)
    print_summary("data", summary)
    skipped = summary.get("skipped")
    if skipped:
        images = "image" if skipped == 1 else "images"
        out.print(f"left out {skipped} {images} that cannot be decoded (data.skip_invalid: true); see data/meta.json")
