"""Where the data-side stages (scan, data, project) read and write, relative to the project root.

The same `data/` folder as `pipeline.common.DATA`; kept apart so these stages do not import the
model code that `pipeline.common` needs.
"""

from pathlib import Path

DATA = Path("data")
SOURCE = DATA / "source.json"  # scan: the source's fingerprint
# data: DATA / "full" / {train,val,test}.pt and DATA / "meta.json"
# project: DATA / "search" / {train,val}.pt and DATA / "search" / "meta.json"
