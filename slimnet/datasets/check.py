"""Decode every image of a folder once, in parallel, so a bad file stops the data stage (with its
name) instead of a training run hours later."""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor, as_completed
from pathlib import Path

from slimnet.console.progress import Reporter

CHUNK = 64  # images per task: large enough to amortize scheduling, small enough for a smooth bar
SMALL = 4  # chunks: fewer are checked in this process (starting a pool would cost more)


def check_image(path: str) -> str | None:
    """None when the file decodes the way the training loader decodes it, else a short reason.

    `draft` lets JPEGs decode at up to 1/8 scale: every byte of the entropy-coded data is still
    read (a truncated or damaged file still fails), for a fraction of the work of a full decode.
    PIL's `verify()` is cheaper still but does not notice a truncated JPEG.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image.draft(image.mode, (1, 1))
            image.load()
            image.convert("RGB")
    except UnidentifiedImageError:
        return "not an image file PIL can read"
    except Exception as err:  # noqa: BLE001 -- PIL raises OSError, SyntaxError, ValueError, DecompressionBombError ...
        text = str(err).strip().splitlines()
        return text[0] if text else type(err).__name__
    return None


def _check_chunk(root: str, paths: Sequence[str]) -> list[tuple[str, str]]:
    bad = []
    for path in paths:
        reason = check_image(os.path.join(root, path))
        if reason is not None:
            bad.append((path, reason))
    return bad


def _executor(kind: str, workers: int) -> Executor:
    if kind == "thread":
        return ThreadPoolExecutor(workers)
    # spawn: fresh workers that import PIL only, never a fork of a process holding torch's threads.
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))


def find_invalid(
    root: Path,
    paths: Sequence[str],
    *,
    workers: int | None = None,
    kind: str = "process",
    report: Reporter | None = None,
) -> list[tuple[str, str]]:
    """(path, reason) of every file under `root` among `paths` that does not decode, sorted by path.

    A pool of `workers` processes (default: one per CPU) decodes chunks of files; a few hundred
    files are checked in this process. Processes, not threads: PIL releases the GIL inside the
    decoder but parses headers and drives the decoder in Python, so threads do not help with small
    images (benchmarks/check_images.py measures both; `kind="thread"` is there for it).
    """
    root_text = str(root)
    chunks = [paths[i : i + CHUNK] for i in range(0, len(paths), CHUNK)]
    workers = 1 if len(chunks) <= SMALL else max(1, min(len(chunks), workers or os.cpu_count() or 1))
    if report is not None:
        report.start("checking images", len(paths))
    bad: list[tuple[str, str]] = []
    if workers == 1:
        for chunk in chunks:
            bad += _check_chunk(root_text, chunk)
            if report is not None:
                report.advance(len(chunk))
        return sorted(bad)
    with _executor(kind, workers) as pool:
        futures = {pool.submit(_check_chunk, root_text, chunk): len(chunk) for chunk in chunks}
        for future in as_completed(futures):
            bad += future.result()
            if report is not None:
                report.advance(futures[future])
    return sorted(bad)
