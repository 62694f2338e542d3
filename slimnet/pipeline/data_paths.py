"""Where the data-side stages (scan, data, project) read and write, relative to the project root.

Kept apart from `pipeline.common` (which re-exports DATA) so these stages import nothing of torch
or the training code.
"""

from pathlib import Path

DATA = Path("data")
SOURCE = DATA / "source.json"  # scan: the source's fingerprint
# data: DATA / "full" / {train,val,test}.pt and DATA / "meta.json"
# project: DATA / "search" / {train,val}.pt and DATA / "search" / "meta.json"
