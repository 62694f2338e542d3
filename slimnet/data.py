"""Dataset preparation (source -> split files on disk) and fast batch iteration.

Small datasets are stored as whole uint8 tensors so training can keep them on the
accelerator and augment there; image folders are stored as (path, label) indexes and
decoded by DataLoader workers.
"""

from __future__ import annotations

import gzip
import math
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from slimnet.atomic import save_torch, write_json
from slimnet.errors import SlimnetError

SOURCES = ("fashion-mnist", "cifar10", "cifar100", "imagefolder")

# Where the Debian package `dataset-fashion-mnist` installs the idx files; a module
# constant so tests can point it elsewhere.
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
FASHION_MNIST_CLASSES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".gif", ".tif", ".tiff", ".webp"}
# Bounds the float working set when resizing or taking statistics (elements per chunk).
CHUNK_ELEMENTS = 1 << 23


# --------------------------------------------------------------------------- sources


@dataclass
class TensorSource:
    train_images: Tensor  # uint8 [N, C, H, W]
    train_labels: Tensor  # int64 [N]
    test_images: Tensor
    test_labels: Tensor
    classes: list[str]


@dataclass
class FolderSource:
    root: Path
    train_paths: list[str]  # relative to root
    train_labels: Tensor
    test_paths: list[str]
    test_labels: Tensor
    classes: list[str]


def _read_idx(path: Path) -> Tensor:
    """Parse an idx file (MNIST format: big-endian header, then raw uint8 data)."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except OSError as err:
        raise SlimnetError(f"cannot read {path}: {err}; delete or re-download it") from None
    if len(data) < 4 or data[0:2] != b"\0\0" or data[2] != 0x08:
        raise SlimnetError(f"{path} is not a uint8 idx file; delete or re-download it")
    ndim = data[3]
    header = 4 + 4 * ndim
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    if len(data) != header + math.prod(dims):
        raise SlimnetError(f"{path} is truncated or corrupt; delete or re-download it")
    return torch.frombuffer(bytearray(data[header:]), dtype=torch.uint8).reshape(dims)


def _find_idx_file(folder: Path, name: str) -> Path | None:
    for candidate in (folder / name, folder / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _idx_files(folder: Path) -> dict[str, Path] | None:
    found = {key: _find_idx_file(folder, name) for key, name in FASHION_MNIST_FILES.items()}
    if any(path is None for path in found.values()):
        return None
    return found  # type: ignore[return-value]


def _one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


def _load_fashion_mnist(root: Path) -> TensorSource:
    for folder in (root, DEBIAN_FASHION_MNIST):
        files = _idx_files(folder)
        if files is not None:
            images = {k: _read_idx(files[k]) for k in ("train_images", "test_images")}
            labels = {k: _read_idx(files[k]).long() for k in ("train_labels", "test_labels")}
            return TensorSource(
                images["train_images"].unsqueeze(1),
                labels["train_labels"],
                images["test_images"].unsqueeze(1),
                labels["test_labels"],
                list(FASHION_MNIST_CLASSES),
            )
    from torchvision import datasets

    try:
        train = datasets.FashionMNIST(root, train=True, download=True)
        test = datasets.FashionMNIST(root, train=False, download=True)
    except Exception as err:  # noqa: BLE001 -- network failures surface as many exception types
        raise SlimnetError(
            f"Fashion-MNIST not found in {root} or {DEBIAN_FASHION_MNIST} and the torchvision "
            f"download failed ({_one_line(err)}); run `apt-get install -y dataset-fashion-mnist` "
            "or allow network access for the torchvision download"
        ) from None
    return TensorSource(
        train.data.unsqueeze(1).contiguous(),
        train.targets.long(),
        test.data.unsqueeze(1).contiguous(),
        test.targets.long(),
        list(FASHION_MNIST_CLASSES),
    )


def _load_cifar(source: str, root: Path) -> TensorSource:
    from torchvision import datasets

    cls = datasets.CIFAR10 if source == "cifar10" else datasets.CIFAR100
    try:
        splits = [cls(root, train=t, download=False) for t in (True, False)]
    except RuntimeError:  # not present locally: fall back to downloading
        try:
            splits = [cls(root, train=t, download=True) for t in (True, False)]
        except Exception as err:  # noqa: BLE001 -- download failures vary by transport
            raise SlimnetError(
                f"{source} not found in {root} and download failed ({_one_line(err)}); "
                f"place the extracted python-version archive in {root} or allow network access"
            ) from None

    def to_tensors(ds) -> tuple[Tensor, Tensor]:
        # torchvision keeps CIFAR as HWC numpy arrays; we store NCHW.
        images = torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous()
        return images, torch.tensor(ds.targets, dtype=torch.int64)

    train_images, train_labels = to_tensors(splits[0])
    test_images, test_labels = to_tensors(splits[1])
    return TensorSource(train_images, train_labels, test_images, test_labels, list(splits[0].classes))


def _list_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def _scan_split(root: Path, split_dir: Path, classes: list[str]) -> tuple[list[str], Tensor]:
    paths: list[str] = []
    labels: list[int] = []
    for label, name in enumerate(classes):
        class_dir = split_dir / name
        if not class_dir.is_dir():
            continue
        files = _list_images(class_dir)
        paths.extend(p.relative_to(root).as_posix() for p in files)
        labels.extend([label] * len(files))
    return paths, torch.tensor(labels, dtype=torch.int64)


def _load_image_folder(root: Path) -> FolderSource:
    train_dir = root / "train"
    if not train_dir.is_dir():
        raise SlimnetError(f"image folder {root} has no train/ directory; expected {root}/train/<class>/*.jpg")
    test_dir = next((root / n for n in ("val", "test") if (root / n).is_dir()), None)
    if test_dir is None:
        raise SlimnetError(f"image folder {root} has no val/ or test/ directory; expected {root}/val/<class>/*.jpg")
    classes = sorted(p.name for p in train_dir.iterdir() if p.is_dir())
    if len(classes) < 2:
        raise SlimnetError(f"{train_dir} needs at least 2 class folders, found {len(classes)}")
    unknown = sorted(p.name for p in test_dir.iterdir() if p.is_dir() and p.name not in classes)
    if unknown:
        raise SlimnetError(f"{test_dir} has class folders missing from train/: {', '.join(unknown[:5])}")
    train_paths, train_labels = _scan_split(root, train_dir, classes)
    empty = [name for c, name in enumerate(classes) if not bool((train_labels == c).any())]
    if empty:
        names = ", ".join(empty[:5])
        raise SlimnetError(f"class folders without training images in {train_dir}: {names}; add images or remove them")
    test_paths, test_labels = _scan_split(root, test_dir, classes)
    if not test_paths:
        raise SlimnetError(f"{test_dir} contains no images; add images under {test_dir}/<class>/")
    return FolderSource(root.resolve(), train_paths, train_labels, test_paths, test_labels, classes)


def load_source(source: str, root: Path) -> TensorSource | FolderSource:
    """Read a raw dataset into memory (tensors) or into a path index (folders)."""
    root = Path(root)
    if source == "fashion-mnist":
        return _load_fashion_mnist(root)
    if source in ("cifar10", "cifar100"):
        return _load_cifar(source, root)
    if source == "imagefolder":
        return _load_image_folder(root)
    raise SlimnetError(f"unknown source {source!r}; choose one of {', '.join(SOURCES)}")


# --------------------------------------------------------------------------- splitting


def _fraction_count(n: int, fraction: float) -> int:
    return math.floor(n * fraction + 0.5)


def split_train_val(labels: Tensor, val_fraction: float, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Class-balanced split of indices: `val_fraction` of every class goes to val."""
    train_parts, val_parts = [], []
    for c in range(int(labels.max()) + 1):
        idx = (labels == c).nonzero().flatten()
        if len(idx) == 0:
            continue
        if len(idx) < 2:
            raise SlimnetError(f"class {c} has {len(idx)} training image; each class needs at least 2 to hold out a val split")
        n_val = min(max(_fraction_count(len(idx), val_fraction), 1), len(idx) - 1)
        idx = idx[torch.randperm(len(idx), generator=generator)]
        val_parts.append(idx[:n_val])
        train_parts.append(idx[n_val:])
    # Sorted indices keep files in source order, which is easier to inspect and diff.
    return torch.cat(train_parts).sort().values, torch.cat(val_parts).sort().values


def balanced_subset(labels: Tensor, fraction: float, generator: torch.Generator) -> Tensor:
    """Positions of a per-class proportional sample (at least one per present class)."""
    parts = []
    for c in range(int(labels.max()) + 1):
        idx = (labels == c).nonzero().flatten()
        if len(idx) == 0:
            continue
        n = min(max(_fraction_count(len(idx), fraction), 1), len(idx))
        parts.append(idx[torch.randperm(len(idx), generator=generator)[:n]])
    return torch.cat(parts).sort().values


# --------------------------------------------------------------------------- tensor ops


def _chunk_rows(images: Tensor) -> int:
    per_image = max(1, images[0].numel())
    return max(1, CHUNK_ELEMENTS // per_image)


def resize_uint8(images: Tensor, resolution: int | None) -> Tensor:
    """Antialiased bilinear resize of a uint8 NCHW batch to a square `resolution`."""
    if resolution is None or tuple(images.shape[-2:]) == (resolution, resolution):
        return images
    out = [
        F.interpolate(chunk.float(), size=(resolution, resolution), mode="bilinear", antialias=True, align_corners=False)
        .round_()
        .clamp_(0, 255)
        .to(torch.uint8)
        for chunk in images.split(_chunk_rows(images))
    ]
    return torch.cat(out)


def channel_stats(images: Tensor) -> tuple[list[float], list[float]]:
    """Per-channel mean and std in [0, 1] units.

    A 256-bin histogram per channel is exact for uint8 and much faster on the CPU than
    reducing the whole tensor in floating point.
    """
    channels = images.shape[1]
    hist = torch.stack([torch.bincount(images[:, c].flatten(), minlength=256).double() for c in range(channels)])
    values = torch.arange(256, dtype=torch.float64) / 255.0
    count = hist.sum(dim=1)
    mean = (hist * values).sum(dim=1) / count
    mean_square = (hist * values.square()).sum(dim=1) / count
    std = (mean_square - mean.square()).clamp_min(1e-12).sqrt()
    return mean.tolist(), std.tolist()


# --------------------------------------------------------------------------- prepare


def _check_fraction(name: str, value: float, allow_one: bool) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    ok = ok and (0 < value <= 1 if allow_one else 0 < value < 1)
    if not ok:
        interval = "(0, 1]" if allow_one else "(0, 1)"
        raise SlimnetError(f"{name} must be a number in {interval}, got {value!r}")


def _check_resolution(name: str, value: int | None) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise SlimnetError(f"{name} must be a positive integer or None, got {value!r}")


def _validate(
    source: str,
    out_dir: Path,
    val_fraction: float,
    resolution: int | None,
    search_resolution: int | None,
    search_fraction: float,
    seed: int,
) -> None:
    if source not in SOURCES:
        raise SlimnetError(f"unknown source {source!r}; choose one of {', '.join(SOURCES)}")
    _check_fraction("val_fraction", val_fraction, allow_one=False)
    _check_fraction("search_fraction", search_fraction, allow_one=True)
    _check_resolution("resolution", resolution)
    _check_resolution("search_resolution", search_resolution)
    if source == "imagefolder" and resolution is None:
        raise SlimnetError("resolution is required for source 'imagefolder' (images have no common size); pass e.g. 224")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise SlimnetError(f"seed must be an integer, got {seed!r}")
    if out_dir.exists() and not out_dir.is_dir():
        raise SlimnetError(f"out_dir {out_dir} exists and is not a directory; remove it or choose another path")


def _tensor_record(
    images: Tensor,
    labels: Tensor,
    indices: Tensor,
    source_split: str,
    resolution: int,
    classes: list[str],
    mean: list[float],
    std: list[float],
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


def _tensor_records(
    src: TensorSource, splits: dict[str, Tensor], resolution: int | None, search_resolution: int | None
) -> tuple[dict[str, dict], dict]:
    native = int(src.train_images.shape[-1])
    res = resolution or native
    search_res = search_resolution or res
    full_train = resize_uint8(src.train_images[splits["train"]], res)
    mean, std = channel_stats(full_train)

    def pick(split: str, size: int, images: Tensor | None = None) -> dict:
        # Every split is resized from native pixels, never from an already-resized copy.
        idx = splits[split]
        images = resize_uint8(src.train_images[idx], size) if images is None else images
        return _tensor_record(images, src.train_labels[idx], idx, "train", size, src.classes, mean, std)

    test_idx = torch.arange(len(src.test_labels))
    test = resize_uint8(src.test_images, res)
    records = {
        "full/train": pick("train", res, full_train),
        "full/val": pick("val", res),
        "full/test": _tensor_record(test, src.test_labels, test_idx, "test", res, src.classes, mean, std),
        "search/train": pick("search", search_res),
        "search/val": pick("val", search_res),
    }
    info = {
        "in_channels": int(src.train_images.shape[1]),
        "native_resolution": native,
        "resolution": res,
        "search_resolution": search_res,
        "mean": mean,
        "std": std,
    }
    return records, info


def _folder_records(
    src: FolderSource, splits: dict[str, Tensor], resolution: int, search_resolution: int | None
) -> tuple[dict[str, dict], dict]:
    search_res = search_resolution or resolution

    def pick(split: str, res: int) -> dict:
        idx = splits[split]
        paths = [src.train_paths[i] for i in idx.tolist()]
        return _folder_record(src, paths, src.train_labels[idx], idx, "train", res)

    test_idx = torch.arange(len(src.test_paths))
    records = {
        "full/train": pick("train", resolution),
        "full/val": pick("val", resolution),
        "full/test": _folder_record(src, src.test_paths, src.test_labels, test_idx, "test", resolution),
        "search/train": pick("search", search_res),
        "search/val": pick("val", search_res),
    }
    info = {
        "in_channels": 3,
        "native_resolution": None,
        "resolution": resolution,
        "search_resolution": search_res,
        "mean": IMAGENET_MEAN,
        "std": IMAGENET_STD,
    }
    return records, info


def shrink_source(src: TensorSource | FolderSource, fraction: float, generator: torch.Generator) -> TensorSource | FolderSource:
    """A class-balanced ``fraction`` of both the training and the test set (quick experiments)."""
    train = balanced_subset(src.train_labels, fraction, generator)
    test = balanced_subset(src.test_labels, fraction, generator)
    if isinstance(src, TensorSource):
        return TensorSource(
            src.train_images[train], src.train_labels[train], src.test_images[test], src.test_labels[test], src.classes
        )
    return FolderSource(
        src.root,
        [src.train_paths[i] for i in train.tolist()],
        src.train_labels[train],
        [src.test_paths[i] for i in test.tolist()],
        src.test_labels[test],
        src.classes,
    )


def prepare_data(
    source: str,
    root: Path,
    out_dir: Path,
    *,
    val_fraction: float,
    resolution: int | None,
    search_resolution: int | None,
    search_fraction: float,
    seed: int,
    fraction: float = 1.0,
) -> dict:
    """Build full/{train,val,test}.pt, search/{train,val}.pt and meta.json under out_dir.

    Nothing is written until the arguments are valid and the source has been read.
    """
    start = time.perf_counter()
    root, out_dir = Path(root), Path(out_dir)
    _validate(source, out_dir, val_fraction, resolution, search_resolution, search_fraction, seed)
    _check_fraction("fraction", fraction, allow_one=True)
    src = load_source(source, root)
    if len(src.train_labels) == 0:
        raise SlimnetError(f"{source} at {root} has no training images")

    generator = torch.Generator().manual_seed(seed)
    if fraction < 1:
        src = shrink_source(src, fraction, generator)
    train_idx, val_idx = split_train_val(src.train_labels, val_fraction, generator)
    search_idx = train_idx[balanced_subset(src.train_labels[train_idx], search_fraction, generator)]
    splits = {"train": train_idx, "val": val_idx, "search": search_idx}

    if isinstance(src, TensorSource):
        records, info = _tensor_records(src, splits, resolution, search_resolution)
    else:
        records, info = _folder_records(src, splits, resolution, search_resolution)  # type: ignore[arg-type]

    counts = {name: len(rec["labels"]) for name, rec in records.items()}
    for name, record in records.items():
        save_torch(out_dir / f"{name}.pt", record)
    meta = {
        "source": source,
        "root": str(root),
        "num_classes": len(src.classes),
        "classes": src.classes,
        "counts": counts,
        "val_fraction": val_fraction,
        "search_fraction": search_fraction,
        "fraction": fraction,
        "seed": seed,
        **info,
    }
    # meta.json goes last: its presence means every split file is complete.
    write_json(out_dir / "meta.json", meta)
    return {"source": source, "counts": counts, "seconds": round(time.perf_counter() - start, 3)}


# --------------------------------------------------------------------------- loading


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
        """uint8 NCHW -> normalized float32 in channels_last."""
        x = images.to(self.device, non_blocking=True).contiguous(memory_format=torch.channels_last)
        return x.float() * self._scale + self._shift

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
    ) -> Iterator[tuple[Tensor, Tensor]]:
        """Yield (normalized float32 channels_last images, int64 labels) on the device.

        `generator` must be a CPU generator; it drives shuffling and augmentation.
        `limit` keeps the first `limit` images of the (shuffled) order.
        """
        raise NotImplementedError


def random_crop_flip(images: Tensor, pad: int, generator: torch.Generator | None) -> Tensor:
    """Zero-pad once, then gather every sample's crop (and optional mirror) in one indexing op."""
    b, c, h, w = images.shape
    device = images.device
    # Random draws happen on the CPU so a CPU generator gives identical results on any device.
    off_y = torch.randint(0, 2 * pad + 1, (b, 1), generator=generator)
    off_x = torch.randint(0, 2 * pad + 1, (b, 1), generator=generator)
    flip = torch.rand(b, 1, generator=generator) < 0.5
    cols = torch.arange(w)
    rows = (off_y + torch.arange(h)).to(device)
    cols = (off_x + torch.where(flip, cols.flip(0), cols)).to(device)
    padded = F.pad(images, (pad, pad, pad, pad))
    batch = torch.arange(b, device=device).view(b, 1, 1, 1)
    chan = torch.arange(c, device=device).view(1, c, 1, 1)
    return padded[batch, chan, rows.view(b, 1, h, 1), cols.view(b, 1, 1, w)]


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
    ) -> Iterator[tuple[Tensor, Tensor]]:
        _check_batch_args(batch_size, limit)
        order = _order(len(self), shuffle, limit, generator).to(self.device)
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            if drop_last and len(idx) < batch_size:
                break
            images = self.images[idx]
            if augment:
                images = random_crop_flip(images, self.resolution // 8, generator)
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
        except OSError as err:
            raise SlimnetError(f"cannot decode image {path}: {_one_line(err)}; remove or replace the file") from None
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
        self.num_workers = min(8, os.cpu_count() or 1)

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
    ) -> Iterator[tuple[Tensor, Tensor]]:
        _check_batch_args(batch_size, limit)
        order = _order(len(self), shuffle, limit, generator).tolist()
        dataset = _FolderDataset(
            self.root, [self.paths[i] for i in order], self.labels[order].tolist(), folder_transform(self.resolution, augment)
        )
        loader = torch.utils.data.DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=False,
            drop_last=drop_last,
            num_workers=self.num_workers,
            pin_memory=self.device.type == "cuda",
            generator=generator,  # seeds the workers' augmentation RNG
        )
        for images, labels in loader:
            yield self.normalize(images), labels.to(self.device, non_blocking=True)


def load_split(path: Path, device: torch.device | str = "cpu") -> ImageSet:
    """Load a split file written by prepare_data."""
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


def fixed_batches(split: ImageSet, count: int, batch_size: int, seed: int) -> list[tuple[Tensor, Tensor]]:
    """A seeded, class-round-robin subset of `count` images as ready-made eval batches.

    Candidates in a search are compared on exactly these batches, so the choice must not
    depend on anything but the seed.
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
    chosen = perm[torch.argsort(key)[: max(0, count)]]
    subset = split.subset(chosen)
    return list(subset.batches(batch_size, shuffle=False, augment=False))
