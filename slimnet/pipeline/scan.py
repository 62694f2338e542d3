"""scan stage: data/source.json, the fingerprint of data.root that decides whether data reruns."""

from __future__ import annotations

from pathlib import Path

from slimnet.atomic import write_json
from slimnet.config import DataParams, Params
from slimnet.console.output import print_summary
from slimnet.datasets.fingerprint import scan_source
from slimnet.pipeline.data_paths import SOURCE

IGNORED_SHOWN = 3


def run_scan(data: DataParams, out: Path = SOURCE) -> dict:
    scan = scan_source(data.source, Path(data.root))
    write_json(out, scan.manifest)
    if scan.listing is None:
        files = scan.manifest["files"]
        return {"source": data.source, "files": sorted(files) if files else "not found here: the data stage downloads them"}
    ignored = scan.listing.ignored
    summary = {"source": data.source, "images": scan.manifest["images"], "ignored": len(ignored)}
    if ignored:
        summary["ignored_examples"] = ignored[:IGNORED_SHOWN]
    return summary


def command(p: Params) -> None:
    """`python -m slimnet scan`: fingerprint the source, print the summary."""
    print_summary("scan", run_scan(p.data))
