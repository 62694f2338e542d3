"""What the data stage's image check costs: serial vs a thread pool vs a process pool.

    python benchmarks/check_images.py FOLDER [--workers N]

FOLDER is an image folder (e.g. one written by benchmarks/make_image_folder.py). Every image is
decoded the way the data stage checks it (slimnet.datasets.check.check_image); each way runs once,
in one process, on a warm file cache (a first untimed pass reads the files).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from slimnet.datasets.check import find_invalid


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    args = parser.parse_args()
    # Imported here: spawned check workers re-import this script, and sources imports torch.
    from slimnet.datasets.sources import list_image_folder

    listing = list_image_folder(args.folder)
    paths = [path for path, _, _ in listing.train + listing.test]
    for path in paths:  # warm the page cache so every way reads from memory
        (listing.root / path).read_bytes()
    results = {}
    for name, kw in (("serial", {"workers": 1}), ("threads", {"kind": "thread"}), ("processes", {"kind": "process"})):
        workers = kw.get("workers", args.workers)
        start = time.perf_counter()
        bad = find_invalid(listing.root, paths, **{**kw, "workers": workers})
        results[name] = time.perf_counter() - start
        print(
            f"{name:9} ({workers} workers): {results[name]:.2f} s, {results[name] / len(paths) * 1e3:.3f} ms/image, {len(bad)} bad"
        )
    print(
        f"speed-up over serial: threads {results['serial'] / results['threads']:.2f}x, processes {results['serial'] / results['processes']:.2f}x"
    )


if __name__ == "__main__":
    main()
