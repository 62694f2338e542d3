"""The projected problem the search runs on: full splits -> search/{train,val}.pt (the project stage).

search/train is a class-balanced `fraction` of full/train, drawn with the data seed; search/val is
full/val. Both at the search resolution: tensor splits are resized from the full split's pixels
(the source's own pixels when the full problem keeps its native size), folder splits only record
the resolution their images are decoded to.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import Tensor

from slimnet.atomic import save_torch, write_json
from slimnet.console.errors import SlimnetError
from slimnet.datasets.split import balanced_subset, resize_uint8


def _read_full(data_dir: Path) -> tuple[dict, dict, dict]:
    meta_path = data_dir / "meta.json"
    paths = [data_dir / "full" / "train.pt", data_dir / "full" / "val.pt"]
    missing = [str(p) for p in (meta_path, *paths) if not p.is_file()]
    if missing:
        raise SlimnetError(f"{missing[0]} not found: prepare the full splits first")
    meta = json.loads(meta_path.read_text())
    train, val = (torch.load(p, map_location="cpu", weights_only=True) for p in paths)
    return meta, train, val


def _project(record: dict, positions: Tensor | None, resolution: int) -> dict:
    out = dict(record)
    if positions is not None:
        out["labels"] = record["labels"][positions]
        out["indices"] = record["indices"][positions]
        if record["kind"] == "tensor":
            out["images"] = record["images"][positions]
        else:
            out["paths"] = [record["paths"][i] for i in positions.tolist()]
    if record["kind"] == "tensor":
        out["images"] = resize_uint8(out["images"], resolution).contiguous()
    out["resolution"] = resolution
    return out


def project_search(data_dir: Path, *, resolution: int | None, fraction: float) -> dict:
    """Write search/{train,val}.pt and search/meta.json under data_dir from its full splits.

    `resolution` None keeps the full problem's resolution; `fraction` of every class of
    full/train (at least one image each) makes search/train.
    """
    data_dir = Path(data_dir)
    meta, train, val = _read_full(data_dir)
    search_resolution = resolution or int(meta["resolution"])
    generator = torch.Generator().manual_seed(int(meta["seed"]))
    positions = balanced_subset(train["labels"], fraction, generator)
    records = {"train": _project(train, positions, search_resolution), "val": _project(val, None, search_resolution)}
    counts = {f"search/{name}": len(record["labels"]) for name, record in records.items()}
    if train["kind"] == "folder":
        resized_from = "files"
    elif meta.get("native_resolution") == meta["resolution"]:
        resized_from = "native"
    else:
        resized_from = "full"
    out_dir = data_dir / "search"
    for name, record in records.items():
        save_torch(out_dir / f"{name}.pt", record)
    search_meta = {
        "source": meta["source"],
        "num_classes": meta["num_classes"],
        "in_channels": meta["in_channels"],
        "resolution": meta["resolution"],
        "search_resolution": search_resolution,
        "resized_from": resized_from,
        "data_fraction": fraction,
        "seed": meta["seed"],
        "counts": counts,
    }
    write_json(out_dir / "meta.json", search_meta)  # last: its presence means both splits are complete
    return {"search_resolution": search_resolution, "counts": counts}
