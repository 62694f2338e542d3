"""Where a source's data is found and how it is read: idx files, CIFAR batches, image folders."""

from __future__ import annotations

import gzip
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported where it is used: the scan stage, on every `dvc repro`, needs none of it
    from torch import Tensor

from slimnet.console.errors import SlimnetError

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
# torchvision's layout of the extracted python-version archives under the root.
CIFAR_FILES = {
    "cifar10": ("cifar-10-batches-py", [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch", "batches.meta"]),
    "cifar100": ("cifar-100-python", ["train", "test", "meta"]),
}
# Files with other suffixes are not images: they are ignored (README.txt, labels.csv ...).
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".gif", ".tif", ".tiff", ".webp"})
EVAL_DIRS = ("val", "test")  # the first one present is the image folder's test split


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


def one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


# --------------------------------------------------------------------------- Fashion-MNIST


def read_idx(path: Path) -> Tensor:
    """Parse an idx file (MNIST format: big-endian header, then raw uint8 data)."""
    import torch

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


def _idx_files(folder: Path) -> dict[str, Path] | None:
    found = {}
    for key, name in FASHION_MNIST_FILES.items():
        path = next((c for c in (folder / name, folder / f"{name}.gz") if c.is_file()), None)
        if path is None:
            return None
        found[key] = path
    return found


def fashion_mnist_files(root: Path) -> dict[str, Path] | None:
    """The idx files the data stage reads: in root, in torchvision's download folder under it,
    or where the Debian package puts them; None when none of them has all four."""
    for folder in (Path(root), Path(root) / "FashionMNIST" / "raw", DEBIAN_FASHION_MNIST):
        files = _idx_files(folder)
        if files is not None:
            return files
    return None


def _load_fashion_mnist(root: Path) -> TensorSource:
    files = fashion_mnist_files(root)
    if files is None:
        from torchvision import datasets

        try:
            datasets.FashionMNIST(root, train=True, download=True)  # downloads all four files
        except Exception as err:  # noqa: BLE001 -- network failures surface as many exception types
            raise SlimnetError(
                f"Fashion-MNIST not found in {root} or {DEBIAN_FASHION_MNIST} and the torchvision "
                f"download failed ({one_line(err)}); run `apt-get install -y dataset-fashion-mnist` "
                "or allow network access for the torchvision download"
            ) from None
        files = fashion_mnist_files(root)
        if files is None:
            raise SlimnetError(f"the torchvision download did not leave the idx files in {root}/FashionMNIST/raw")
    images = {k: read_idx(files[k]) for k in ("train_images", "test_images")}
    labels = {k: read_idx(files[k]).long() for k in ("train_labels", "test_labels")}
    return TensorSource(
        images["train_images"].unsqueeze(1),
        labels["train_labels"],
        images["test_images"].unsqueeze(1),
        labels["test_labels"],
        list(FASHION_MNIST_CLASSES),
    )


# --------------------------------------------------------------------------- CIFAR


def cifar_files(source: str, root: Path) -> list[Path] | None:
    """The batch files torchvision reads for CIFAR-10/100, or None when any is missing."""
    folder, names = CIFAR_FILES[source]
    paths = [Path(root) / folder / name for name in names]
    return paths if all(p.is_file() for p in paths) else None


def _load_cifar(source: str, root: Path) -> TensorSource:
    import torch
    from torchvision import datasets

    cls = datasets.CIFAR10 if source == "cifar10" else datasets.CIFAR100
    try:
        splits = [cls(root, train=t, download=False) for t in (True, False)]
    except RuntimeError:  # not present locally: fall back to downloading
        try:
            splits = [cls(root, train=t, download=True) for t in (True, False)]
        except Exception as err:  # noqa: BLE001 -- download failures vary by transport
            raise SlimnetError(
                f"{source} not found in {root} and download failed ({one_line(err)}); "
                f"place the extracted python-version archive in {root} or allow network access"
            ) from None

    def to_tensors(ds) -> tuple[Tensor, Tensor]:
        # torchvision keeps CIFAR as HWC numpy arrays; we store NCHW.
        images = torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous()
        return images, torch.tensor(ds.targets, dtype=torch.int64)

    train_images, train_labels = to_tensors(splits[0])
    test_images, test_labels = to_tensors(splits[1])
    return TensorSource(train_images, train_labels, test_images, test_labels, list(splits[0].classes))


def load_tensor_source(source: str, root: Path) -> TensorSource:
    """Read a small dataset (Fashion-MNIST, CIFAR) into uint8 tensors."""
    if source == "fashion-mnist":
        return _load_fashion_mnist(Path(root))
    return _load_cifar(source, Path(root))


# --------------------------------------------------------------------------- image folders

Entry = tuple[str, int, int]  # (path relative to the root, size in bytes, mtime in ns)


@dataclass(frozen=True)
class FolderListing:
    """Every image file of an image folder, found by suffix, with its size and modification time."""

    root: Path  # absolute
    classes: list[str]  # the folders in train/, sorted; label = position
    eval_dir: str  # "val" or "test"
    train: list[Entry]  # sorted by path
    test: list[Entry]
    ignored: list[str]  # files and hidden entries that are not images, sorted


def _walk(directory: str, prefix: str, images: list[Entry], ignored: list[str]) -> None:
    # os.scandir hands out file types without a stat call; one stat per image gives size and mtime.
    with os.scandir(directory) as entries:
        for entry in entries:
            rel = prefix + entry.name
            if entry.name.startswith("."):  # .DS_Store, macOS ._x.jpg twins, .ipynb_checkpoints/
                ignored.append(rel)
            elif entry.is_dir():
                _walk(entry.path, rel + "/", images, ignored)
            elif os.path.splitext(entry.name)[1].lower() in IMAGE_SUFFIXES:
                stat = entry.stat()
                images.append((rel, stat.st_size, stat.st_mtime_ns))
            else:
                ignored.append(rel)


def _class_dirs(split_dir: Path, ignored: list[str], prefix: str) -> list[str]:
    classes = []
    with os.scandir(split_dir) as entries:
        for entry in entries:
            if entry.is_dir() and not entry.name.startswith("."):
                classes.append(entry.name)
            else:  # loose files beside the class folders belong to no class
                ignored.append(prefix + entry.name)
    return sorted(classes)


def list_image_folder(root: Path) -> FolderListing:
    """Walk root/train/<class>/** and root/val/<class>/** (or test/); structure errors are one line."""
    root = Path(root)
    if not root.is_dir():
        raise SlimnetError(f"image folder {root} not found; expected {root}/train/<class>/*.jpg and {root}/val/<class>/*.jpg")
    train_dir = root / "train"
    if not train_dir.is_dir():
        raise SlimnetError(f"image folder {root} has no train/ directory; expected {root}/train/<class>/*.jpg")
    eval_dir = next((name for name in EVAL_DIRS if (root / name).is_dir()), None)
    if eval_dir is None:
        raise SlimnetError(f"image folder {root} has no val/ or test/ directory; expected {root}/val/<class>/*.jpg")
    ignored = [e.name for e in os.scandir(root) if e.name not in ("train", eval_dir)]
    classes = _class_dirs(train_dir, ignored, "train/")
    if len(classes) < 2:
        raise SlimnetError(f"{train_dir} needs at least 2 class folders, found {len(classes)}")
    eval_classes = _class_dirs(root / eval_dir, ignored, f"{eval_dir}/")
    unknown = [name for name in eval_classes if name not in classes]
    if unknown:
        raise SlimnetError(f"{root / eval_dir} has class folders missing from train/: {', '.join(unknown[:5])}")
    splits: dict[str, list[Entry]] = {}
    for split, names in (("train", classes), (eval_dir, eval_classes)):
        images: list[Entry] = []
        for name in names:
            _walk(str(root / split / name), f"{split}/{name}/", images, ignored)
        splits[split] = sorted(images)
    return FolderListing(root.resolve(), classes, eval_dir, splits["train"], splits[eval_dir], sorted(ignored))


def folder_source(listing: FolderListing, exclude: frozenset[str] = frozenset()) -> FolderSource:
    """The (path, label) index of a listing, grouped by class, without the `exclude` paths."""
    import torch

    label_of = {name: label for label, name in enumerate(listing.classes)}

    def index(entries: list[Entry]) -> tuple[list[str], Tensor]:
        # Paths are <split>/<class>/...: the second part names the class.
        pairs = sorted((label_of[path.split("/", 2)[1]], path) for path, _, _ in entries if path not in exclude)
        return [path for _, path in pairs], torch.tensor([label for label, _ in pairs], dtype=torch.int64)

    train_paths, train_labels = index(listing.train)
    counts = torch.bincount(train_labels, minlength=len(listing.classes))
    empty = [name for name, count in zip(listing.classes, counts.tolist()) if count == 0]
    if empty:
        raise SlimnetError(
            f"class folders without training images in {listing.root / 'train'}: {', '.join(empty[:5])}; add images or remove them"
        )
    test_paths, test_labels = index(listing.test)
    if not test_paths:
        eval_dir = listing.root / listing.eval_dir
        raise SlimnetError(f"{eval_dir} contains no images; add images under {eval_dir}/<class>/")
    return FolderSource(listing.root, train_paths, train_labels, test_paths, test_labels, list(listing.classes))
