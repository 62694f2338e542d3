"""The scan stage's fingerprint of a source: a small JSON that changes exactly when what the data
stage would read changes.

- Image folders: the sorted (relative path, size, mtime) of every image file, hashed. Adding,
  removing, replacing or touching an image changes it; files that are not images do not (they are
  never read). A walk costs one stat per image, no reads.
- Fashion-MNIST and CIFAR: a content hash of the few files the data stage reads, so the manifest
  is the same on every machine with the same files.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from slimnet.datasets.sources import FASHION_MNIST_FILES, FolderListing, cifar_files, fashion_mnist_files, list_image_folder

CHUNK = 1 << 20


@dataclass(frozen=True)
class Scan:
    manifest: dict  # what data/source.json holds
    listing: FolderListing | None  # image folders: every image file (the data stage reads these)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def listing_sha256(listing: FolderListing) -> str:
    digest = hashlib.sha256()
    for entries in (listing.train, listing.test):
        for path, size, mtime_ns in entries:
            # surrogateescape: file names that are not valid UTF-8 still hash (to their raw bytes).
            digest.update(f"{path}\0{size}\0{mtime_ns}\n".encode("utf-8", "surrogateescape"))
    return digest.hexdigest()


def _folder_manifest(listing: FolderListing) -> dict:
    return {
        "source": "imagefolder",
        "classes": len(listing.classes),
        "images": {"train": len(listing.train), listing.eval_dir: len(listing.test)},
        "bytes": sum(size for entries in (listing.train, listing.test) for _, size, _ in entries),
        "listing_sha256": listing_sha256(listing),
    }


def _files_manifest(source: str, paths: list[Path] | None) -> dict:
    if paths is None:  # the data stage downloads it; the next scan sees the downloaded files
        return {"source": source, "files": None}
    return {"source": source, "files": {p.name: {"bytes": p.stat().st_size, "sha256": file_sha256(p)} for p in paths}}


def scan_source(source: str, root: Path) -> Scan:
    """Fingerprint `source` at `root` (see the module docstring)."""
    root = Path(root)
    if source == "imagefolder":
        listing = list_image_folder(root)
        return Scan(_folder_manifest(listing), listing)
    if source == "fashion-mnist":
        files = fashion_mnist_files(root)
        paths = None if files is None else [files[key] for key in FASHION_MNIST_FILES]
    else:
        paths = cifar_files(source, root)
    return Scan(_files_manifest(source, paths), None)
