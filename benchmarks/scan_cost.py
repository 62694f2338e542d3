"""What the scan stage costs on a large image folder, extrapolated to ImageNet (1.28M images).

    python benchmarks/scan_cost.py [--files 200000] [--classes 1000] [--dir /tmp]

Writes an ImageNet-shaped folder of tiny files (train/<class>/N.jpg plus a val/ of 1/25 the size;
contents do not matter: the scan reads no image) in a temporary folder, times the scan (one stat
per file, then a sha256 of the sorted listing) twice, and deletes the folder. Times are for a warm
file-system cache; a cold cache on a network disk costs more (one metadata round trip per file).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from slimnet.datasets.fingerprint import listing_sha256
from slimnet.datasets.sources import list_image_folder

IMAGENET = 1_281_167 + 50_000


def write_folder(root: Path, files: int, classes: int) -> int:
    written = 0
    for split, count in (("train", files), ("val", max(classes, files // 25))):
        for c in range(classes):
            folder = root / split / f"n{c:08d}"
            folder.mkdir(parents=True)
            for i in range(count // classes):
                (folder / f"n{c:08d}_{i}.JPEG").write_bytes(b"\xff\xd8")
                written += 1
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=200_000, help="training images (val/ gets 1/25 as many)")
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()))
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="scan-cost-", dir=args.dir))
    try:
        start = time.perf_counter()
        n = write_folder(root, args.files, args.classes)
        print(f"wrote {n:,} files in {time.perf_counter() - start:.1f} s")
        for run in (1, 2):
            start = time.perf_counter()
            listing = list_image_folder(root)
            walked = time.perf_counter() - start
            listing_sha256(listing)
            total = time.perf_counter() - start
            per_file = total / n
            print(
                f"scan {run}: {total:.2f} s for {n:,} files (walk + stat + sort {walked:.2f} s, listing hash {total - walked:.2f} s): "
                f"{per_file * 1e6:.1f} us/file -> {per_file * IMAGENET:.1f} s for ImageNet's {IMAGENET:,}"
            )
    finally:
        start = time.perf_counter()
        shutil.rmtree(root)
        print(f"removed {root} in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
