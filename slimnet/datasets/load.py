"""Loading prepared splits and iterating batches: what every stage that trains or evaluates uses.

A split file is a small dict: uint8 image tensors for small datasets (so training can keep them
on the accelerator and augment there), or a (path, label) index for image folders, decoded by
DataLoader workers. Preparing those files is `slimnet.datasets` (the data-side stages only).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from slimnet.console.errors import SlimnetError


def _one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


def _order(n: int, shuffle: bool, limit: int | None, generator: torch.Generator | None) -> Tensor:
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    return order if limit is None else order[: max(0, limit)]


def _check_batch_args(batch_size: int, limit: int | None) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size <= 0:
        raise SlimnetError(f"batch_size must be a positive integer, got {batch_size!r}")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise SlimnetError(f"limit must be a non-negative integer or None, got {limit!r}")


class ImageSet:
    """A loaded split. Subclasses differ in where pixels live (device tensor vs files)."""

    def __init__(self, record: dict, labels: Tensor, device: torch.device) -> None:
        self.device = device
        self.labels = labels
        self.indices: Tensor = record["indices"]
        self.num_classes: int = int(record["num_classes"])
        self.in_channels: int = int(record["in_channels"])
        self.resolution: int = int(record["resolution"])
        self.classes: list[str] = list(record.get("classes") or [])
        self.mean: list[float] = list(record["mean"])
        self.std: list[float] = list(record["std"])
        # Keep only the small fields: the pixels must not stay alive on the CPU once moved.
        self._meta = {k: v for k, v in record.items() if k not in ("images", "labels", "indices", "paths")}
        # Folding 1/255 into the scale lets normalization be one multiply-add.
        std = torch.tensor(self.std, dtype=torch.float32, device=device).view(1, -1, 1, 1)
        mean = torch.tensor(self.mean, dtype=torch.float32, device=device).view(1, -1, 1, 1)
        self._scale = 1.0 / (255.0 * std)
        self._shift = -mean / std

    def __len__(self) -> int:
        return len(self.labels)

    def normalize(self, images: Tensor) -> Tensor:
        """uint8 NCHW -> normalized floats (torch's default dtype: float32 unless a caller chose
        float64, as the exactness tests do) in channels_last."""
        x = images.to(self.device, non_blocking=True).contiguous(memory_format=torch.channels_last)
        dtype = torch.get_default_dtype()
        return x.to(dtype) * self._scale.to(dtype) + self._shift.to(dtype)

    def subset(self, positions: Tensor) -> ImageSet:
        """A new set holding only the images at `positions` (in that order)."""
        raise NotImplementedError

    def batches(
        self,
        batch_size: int,
        *,
        shuffle: bool,
        augment: bool,
        generator: torch.Generator | None = None,
        drop_last: bool = False,
        limit: int | None = None,
        shard: tuple[int, int] = (0, 1),
    ) -> Iterator[tuple[Tensor, Tensor]]:
        """Yield (normalized float32 channels_last images, int64 labels) on the device.

        `generator` must be a CPU generator; it drives shuffling and augmentation.
        `limit` keeps the first `limit` images of the (shuffled) order.
        `shard` = (rank, size): yield only this rank's contiguous share of every batch of
        `batch_size` (the global batch): the same order, the same drop_last decision and, for
        in-memory sets, the same augmentation draws as one process; an empty share is skipped.
        """
        raise NotImplementedError


def random_crop_flip(
    images: Tensor, pad: int, generator: torch.Generator | None, draws: tuple[Tensor, Tensor, Tensor] | None = None
) -> Tensor:
    """Zero-pad once, then gather every sample's crop (and optional mirror) in one indexing op.

    ``draws`` (offsets y, x and flips, from :func:`crop_flip_draws`) replace the generator's.
    """
    b, c, h, w = images.shape
    device = images.device
    off_y, off_x, flip = draws if draws is not None else crop_flip_draws(b, pad, generator)
    cols = torch.arange(w)
    rows = (off_y + torch.arange(h)).to(device)
    cols = (off_x + torch.where(flip, cols.flip(0), cols)).to(device)
    padded = F.pad(images, (pad, pad, pad, pad))
    batch = torch.arange(b, device=device).view(b, 1, 1, 1)
    chan = torch.arange(c, device=device).view(1, c, 1, 1)
    return padded[batch, chan, rows.view(b, 1, h, 1), cols.view(b, 1, 1, w)]


def crop_flip_draws(b: int, pad: int, generator: torch.Generator | None) -> tuple[Tensor, Tensor, Tensor]:
    # Random draws happen on the CPU so a CPU generator gives identical results on any device.
    off_y = torch.randint(0, 2 * pad + 1, (b, 1), generator=generator)
    off_x = torch.randint(0, 2 * pad + 1, (b, 1), generator=generator)
    flip = torch.rand(b, 1, generator=generator) < 0.5
    return off_y, off_x, flip


def _share(n: int, shard: tuple[int, int]) -> tuple[int, int]:
    rank, size = shard
    return n * rank // size, n * (rank + 1) // size


def _global_batches(n: int, batch_size: int, drop_last: bool, shard: tuple[int, int]) -> Iterator[tuple[int, int, int, int]]:
    """The batching every split shares: (start, stop) of each global batch of ``batch_size``
    positions in an order of ``n`` (a short last one unless ``drop_last``) and this rank's share
    [lo, hi) of it, relative to ``start`` (empty shares included)."""
    for start in range(0, n, batch_size):
        stop = min(start + batch_size, n)
        if drop_last and stop - start < batch_size:
            break
        lo, hi = _share(stop - start, shard)
        yield start, stop, lo, hi


class TensorImageSet(ImageSet):
    """All pixels live on `device` as uint8; batches are sliced and augmented there."""

    def __init__(self, record: dict, device: torch.device) -> None:
        super().__init__(record, record["labels"].to(device), device)
        self.images: Tensor = record["images"].to(device)

    def subset(self, positions: Tensor) -> TensorImageSet:
        record = dict(self._meta)
        pos = positions.to(self.images.device)
        record.update(images=self.images[pos], labels=self.labels[pos], indices=self.indices[positions.cpu()])
        return TensorImageSet(record, self.device)

    def batches(
        self,
        batch_size: int,
        *,
        shuffle: bool,
        augment: bool,
        generator: torch.Generator | None = None,
        drop_last: bool = False,
        limit: int | None = None,
        shard: tuple[int, int] = (0, 1),
    ) -> Iterator[tuple[Tensor, Tensor]]:
        _check_batch_args(batch_size, limit)
        order = _order(len(self), shuffle, limit, generator).to(self.device)
        for start, stop, lo, hi in _global_batches(len(order), batch_size, drop_last, shard):
            # The whole batch's draws, so the generator moves as in one process.
            draws = crop_flip_draws(stop - start, self.resolution // 8, generator) if augment else None
            if hi == lo:
                continue
            idx = order[start + lo : start + hi]
            images = self.images[idx]
            if draws is not None:
                images = random_crop_flip(images, self.resolution // 8, None, tuple(d[lo:hi] for d in draws))
            yield self.normalize(images), self.labels[idx]


class _FolderDataset(torch.utils.data.Dataset):
    def __init__(self, root: Path, paths: list[str], labels: list[int], transform) -> None:
        self.root, self.paths, self.labels, self.transform = root, paths, labels, transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        from PIL import Image

        path = self.root / self.paths[i]
        try:
            with Image.open(path) as img:
                image = img.convert("RGB")
        except Exception as err:  # noqa: BLE001 -- PIL raises OSError, SyntaxError, ValueError ...
            raise SlimnetError(
                f"cannot read image {path} ({_one_line(err)}): it changed after the data stage checked it; "
                "restore it, or run `dvc repro` to prepare the data again"
            ) from None
        return self.transform(image), self.labels[i]


def folder_transform(resolution: int, augment: bool):
    """PIL -> uint8 CHW; normalization happens later on the device, on whole batches."""
    from torchvision import transforms as T

    if augment:
        steps = [T.RandomResizedCrop(resolution), T.RandomHorizontalFlip()]
    else:
        # 0.875 is the usual ImageNet eval crop ratio (e.g. 256 -> 224).
        steps = [T.Resize(int(resolution / 0.875)), T.CenterCrop(resolution)]
    return T.Compose([*steps, T.PILToTensor()])


class FolderImageSet(ImageSet):
    """Images decoded from disk by DataLoader workers; only the path index is in memory."""

    def __init__(self, record: dict, device: torch.device) -> None:
        super().__init__(record, record["labels"], device)
        self.root = Path(record["root"])
        self.paths: list[str] = list(record["paths"])
        # Ranks on one host share its cores (torchrun sets LOCAL_WORLD_SIZE).
        local_ranks = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
        self.num_workers = min(8, max(1, (os.cpu_count() or 1) // local_ranks))

    def subset(self, positions: Tensor) -> FolderImageSet:
        record = dict(self._meta)
        pos = positions.cpu()
        record.update(paths=[self.paths[i] for i in pos.tolist()], labels=self.labels[pos], indices=self.indices[pos])
        return FolderImageSet(record, self.device)

    def batches(
        self,
        batch_size: int,
        *,
        shuffle: bool,
        augment: bool,
        generator: torch.Generator | None = None,
        drop_last: bool = False,
        limit: int | None = None,
        shard: tuple[int, int] = (0, 1),
    ) -> Iterator[tuple[Tensor, Tensor]]:
        _check_batch_args(batch_size, limit)
        order = _order(len(self), shuffle, limit, generator).tolist()
        dataset = _FolderDataset(
            self.root, [self.paths[i] for i in order], self.labels[order].tolist(), folder_transform(self.resolution, augment)
        )
        # Each rank loads its share of every global batch (positions in `order`).
        shares = [
            list(range(start + lo, start + hi))
            for start, _, lo, hi in _global_batches(len(order), batch_size, drop_last, shard)
            if hi > lo
        ]
        loader = torch.utils.data.DataLoader(
            dataset,
            batch_sampler=shares,
            num_workers=self.num_workers,
            pin_memory=self.device.type == "cuda",
            generator=generator,  # seeds the workers' augmentation RNG
        )
        try:
            for images, labels in loader:
                yield self.normalize(images), labels.to(self.device, non_blocking=True)
        except SlimnetError as err:
            raise SlimnetError(_worker_error(err)) from None


def _worker_error(err: SlimnetError) -> str:
    """The one-line message of a SlimnetError raised in a DataLoader worker.

    The DataLoader re-raises a worker's exception in the main process with the worker's whole
    traceback as its message; the original message is that traceback's last line.
    """
    lines = [line for line in str(err).splitlines() if line.strip()]
    last = lines[-1].strip() if lines else type(err).__name__
    _, found, message = last.partition("SlimnetError: ")
    return message if found else last


def load_split(path: Path, device: torch.device | str = "cpu") -> ImageSet:
    """Load a split file written by the data or project stage."""
    path = Path(path)
    if not path.is_file():
        raise SlimnetError(f"split file {path} not found; run the data preparation step first")
    record = torch.load(path, map_location="cpu", weights_only=True)
    kind = record.get("kind") if isinstance(record, dict) else None
    device = torch.device(device)
    if kind == "tensor":
        return TensorImageSet(record, device)
    if kind == "folder":
        return FolderImageSet(record, device)
    raise SlimnetError(f"{path} is not a slimnet split file; re-run the data preparation step")


def fixed_batches(split: ImageSet, count: int, batch_size: int, seed: int, skip: int = 0) -> list[tuple[Tensor, Tensor]]:
    """A seeded, class-round-robin subset of `count` images as ready-made eval batches.

    Candidates in a search are compared on exactly these batches, so the choice must not
    depend on anything but the seed. ``skip`` passes over the first images of the same order:
    ``skip=count`` gives a second sample, disjoint from the first and as class-balanced.
    """
    labels = split.labels.cpu()
    n = len(labels)
    generator = torch.Generator().manual_seed(seed)
    perm = torch.randperm(n, generator=generator)
    shuffled = labels[perm]
    # Rank each image within its class; sorting by (rank, class) deals classes out in turn.
    by_class = torch.argsort(shuffled, stable=True)
    class_counts = torch.bincount(shuffled, minlength=split.num_classes)
    class_start = torch.cumsum(class_counts, 0) - class_counts
    rank = torch.empty(n, dtype=torch.int64)
    rank[by_class] = torch.arange(n) - class_start[shuffled[by_class]]
    key = rank * split.num_classes + shuffled
    chosen = perm[torch.argsort(key)[skip : skip + max(0, count)]]
    subset = split.subset(chosen)
    return list(subset.batches(batch_size, shuffle=False, augment=False))
