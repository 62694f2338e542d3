"""The full problem: a source -> full/{train,val,test}.pt and meta.json (the data stage).

Small datasets are stored as whole uint8 tensors so training can keep them on the accelerator
and augment there; image folders as (path, label) indexes, decoded by DataLoader workers. Every
image of a folder is decoded once here, so a bad file is found now, by name.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
from torch import Tensor

from slimnet.atomic import save_torch, write_json
from slimnet.console.errors import SlimnetError
from slimnet.console.progress import Reporter
from slimnet.datasets.check import find_invalid
from slimnet.datasets.sources import (
    FolderListing,
    FolderSource,
    TensorSource,
    folder_source,
    list_image_folder,
    load_tensor_source,
)
from slimnet.datasets.split import balanced_subset, channel_stats, resize_uint8, split_train_val

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]
SHOWN = 3  # bad files named in an error line
RECORDED = 20  # skipped files named in meta.json


class InvalidImages(SlimnetError):
    """Some images of a folder do not decode; `.invalid` holds (path, reason) of each."""

    def __init__(self, invalid: list[tuple[str, str]], total: int, root: Path) -> None:
        self.invalid = invalid
        shown = ", ".join(f"{path} ({reason})" for path, reason in invalid[:SHOWN])
        more = f" and {len(invalid) - SHOWN} more" if len(invalid) > SHOWN else ""
        super().__init__(f"{len(invalid)} of {total:,} images in {root} cannot be decoded: {shown}{more}")


def _tensor_record(
    images: Tensor, labels: Tensor, indices: Tensor, source_split: str, resolution: int, classes: list[str], mean, std
) -> dict:
    return {
        "kind": "tensor",
        "images": images.contiguous(),
        "labels": labels,
        "indices": indices,
        "source_split": source_split,
        "resolution": resolution,
        "num_classes": len(classes),
        "in_channels": int(images.shape[1]),
        "classes": classes,
        "mean": mean,
        "std": std,
    }


def _folder_record(
    src: FolderSource, paths: list[str], labels: Tensor, indices: Tensor, source_split: str, resolution: int
) -> dict:
    return {
        "kind": "folder",
        "root": str(src.root),
        "paths": paths,
        "labels": labels,
        "indices": indices,
        "source_split": source_split,
        "resolution": resolution,
        "num_classes": len(src.classes),
        "in_channels": 3,
        "classes": src.classes,
        "mean": IMAGENET_MEAN,
        "std": IMAGENET_STD,
    }


def shrink_source(src: TensorSource | FolderSource, fraction: float, generator: torch.Generator) -> TensorSource | FolderSource:
    """A class-balanced ``fraction`` of both the training and the test set (quick experiments)."""
    train = balanced_subset(src.train_labels, fraction, generator)
    test = balanced_subset(src.test_labels, fraction, generator)
    if isinstance(src, TensorSource):
        return TensorSource(
            src.train_images[train], src.train_labels[train], src.test_images[test], src.test_labels[test], src.classes
        )
    return _keep(src, train.tolist(), test.tolist())


def _keep(src: FolderSource, train: list[int], test: list[int]) -> FolderSource:
    return FolderSource(
        src.root,
        [src.train_paths[i] for i in train],
        src.train_labels[train],
        [src.test_paths[i] for i in test],
        src.test_labels[test],
        src.classes,
    )


def _without(src: FolderSource, exclude: set[str]) -> FolderSource:
    train = [i for i, path in enumerate(src.train_paths) if path not in exclude]
    test = [i for i, path in enumerate(src.test_paths) if path not in exclude]
    kept = _keep(src, train, test)
    counts = torch.bincount(kept.train_labels, minlength=len(src.classes)).tolist()
    empty = [name for name, count in zip(src.classes, counts) if count == 0]
    if empty:
        raise SlimnetError(f"without the images that cannot be decoded, class {empty[0]!r} has no training images left")
    return kept


def _tensor_splits(src: TensorSource, train_idx: Tensor, val_idx: Tensor, resolution: int | None) -> tuple[dict, dict]:
    native = int(src.train_images.shape[-1])
    res = resolution or native
    # Every split is resized from native pixels, once.
    train = resize_uint8(src.train_images[train_idx], res)
    mean, std = channel_stats(train)
    records = {
        "train": _tensor_record(train, src.train_labels[train_idx], train_idx, "train", res, src.classes, mean, std),
        "val": _tensor_record(
            resize_uint8(src.train_images[val_idx], res), src.train_labels[val_idx], val_idx, "train", res, src.classes, mean, std
        ),
        "test": _tensor_record(
            resize_uint8(src.test_images, res),
            src.test_labels,
            torch.arange(len(src.test_labels)),
            "test",
            res,
            src.classes,
            mean,
            std,
        ),
    }
    info = {
        "in_channels": int(src.train_images.shape[1]),
        "native_resolution": native,
        "resolution": res,
        "mean": mean,
        "std": std,
    }
    return records, info


def _folder_splits(src: FolderSource, train_idx: Tensor, val_idx: Tensor, resolution: int) -> tuple[dict, dict]:
    def pick(idx: Tensor) -> dict:
        return _folder_record(src, [src.train_paths[i] for i in idx.tolist()], src.train_labels[idx], idx, "train", resolution)

    test_idx = torch.arange(len(src.test_paths))
    records = {
        "train": pick(train_idx),
        "val": pick(val_idx),
        "test": _folder_record(src, src.test_paths, src.test_labels, test_idx, "test", resolution),
    }
    info = {"in_channels": 3, "native_resolution": None, "resolution": resolution, "mean": IMAGENET_MEAN, "std": IMAGENET_STD}
    return records, info


def prepare_full(
    source: str,
    root: Path,
    out_dir: Path,
    *,
    val_fraction: float,
    resolution: int | None,
    seed: int,
    fraction: float = 1.0,
    skip_invalid: bool = False,
    listing: FolderListing | None = None,
    report: Reporter | None = None,
) -> dict:
    """Build full/{train,val,test}.pt and meta.json under out_dir; nothing is written on an error.

    `resolution` None keeps a tensor source's own size; an image folder needs one. An image
    folder's `listing` (from the scan) is walked again when not given. Images that do not decode
    raise InvalidImages, or are left out (and counted in meta.json) with `skip_invalid`.
    """
    start = time.perf_counter()
    root, out_dir = Path(root), Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise SlimnetError(f"{out_dir} exists and is not a directory; remove it or choose another path")
    generator = torch.Generator().manual_seed(seed)
    extra: dict = {}
    summary: dict = {}
    if source == "imagefolder":
        if resolution is None:
            raise ValueError("an image folder needs a resolution: its images have no common size")
        listing = list_image_folder(root) if listing is None else listing
        src: TensorSource | FolderSource = folder_source(listing)
        if fraction < 1:
            src = shrink_source(src, fraction, generator)
        paths = src.train_paths + src.test_paths
        if report is not None:
            report.line(f"decoding {len(paths):,} images of {src.root} to check them")
        invalid = find_invalid(src.root, paths, report=report)
        if invalid and not skip_invalid:
            raise InvalidImages(invalid, len(paths), root)
        if invalid:
            src = _without(src, {path for path, _ in invalid})
        extra["skipped"] = {"count": len(invalid), "files": [f"{path}: {reason}" for path, reason in invalid[:RECORDED]]}
        summary.update(checked=len(paths), skipped=len(invalid), ignored=len(listing.ignored))
    else:
        src = load_tensor_source(source, root)
        if fraction < 1:
            src = shrink_source(src, fraction, generator)
    if len(src.train_labels) == 0:
        raise SlimnetError(f"{source} at {root} has no training images")

    train_idx, val_idx = split_train_val(src.train_labels, val_fraction, generator)
    if isinstance(src, TensorSource):
        records, info = _tensor_splits(src, train_idx, val_idx, resolution)
    else:
        records, info = _folder_splits(src, train_idx, val_idx, resolution)  # type: ignore[arg-type]

    counts = {f"full/{name}": len(record["labels"]) for name, record in records.items()}
    for name, record in records.items():
        save_torch(out_dir / "full" / f"{name}.pt", record)
    meta = {
        "source": source,
        "root": str(root),
        "num_classes": len(src.classes),
        "classes": src.classes,
        "counts": counts,
        "val_fraction": val_fraction,
        "fraction": fraction,
        "seed": seed,
        **info,
        **extra,
    }
    # meta.json goes last: its presence means every split file is complete. No wall-clock
    # times in it: the same inputs must give the same bytes.
    write_json(out_dir / "meta.json", meta)
    return {"source": source, "counts": counts, **summary, "seconds": round(time.perf_counter() - start, 3)}
