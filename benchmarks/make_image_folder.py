"""Write a user-style image folder from Fashion-MNIST: the setting of "my own data".

    python benchmarks/make_image_folder.py OUT [--train 8000] [--val 2000] [--corrupt] [--seed 0]

OUT/train/<class>/NNNNN.{png,jpg} and OUT/val/<class>/..., RGB, PNG or JPEG at random, every
image resized to a random width and height in 28..48 px; plus the junk a real folder collects
(README.txt files, .DS_Store files at several levels, a macOS ._ twin of a .jpg). With --corrupt, one extra training
image is a truncated JPEG (the first half of a valid one), so the data stage has to find it.

Images are drawn (seeded) from the Fashion-MNIST test set, then the training set when more are
asked for. The same arguments write the same bytes (file times aside). Used by the tests at a
tiny size and by hand at the issue's size (8,000 + 2,000).
"""

from __future__ import annotations

import argparse
import gzip
import io
import random
import sys
from pathlib import Path

import numpy as np

FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
# Folder-safe versions of the Fashion-MNIST class names (one has a slash, one a space).
CLASSES = ["T-shirt-top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
SIZES = (28, 48)


def read_idx(folder: Path, name: str) -> np.ndarray:
    for path, opener in ((folder / name, open), (folder / f"{name}.gz", gzip.open)):
        if path.is_file():
            with opener(path, "rb") as f:
                data = f.read()
            ndim = data[3]
            dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
            return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)
    raise SystemExit(f"{name} not found in {folder}: apt-get install -y dataset-fashion-mnist, or pass --source")


def load_pool(folder: Path, per_class: int) -> tuple[np.ndarray, np.ndarray]:
    """Images and labels with at least `per_class` of each class: the test set, then the training set too."""
    images = [read_idx(folder, "t10k-images-idx3-ubyte")]
    labels = [read_idx(folder, "t10k-labels-idx1-ubyte")]
    if per_class > len(labels[0]) // len(CLASSES):
        images.append(read_idx(folder, "train-images-idx3-ubyte"))
        labels.append(read_idx(folder, "train-labels-idx1-ubyte"))
    images_all, labels_all = np.concatenate(images), np.concatenate(labels)
    if per_class > len(labels_all) // len(CLASSES):
        raise SystemExit(f"asked for {per_class} images per class; Fashion-MNIST has {len(labels_all) // len(CLASSES)}")
    return images_all, labels_all


def balanced_draw(labels: np.ndarray, classes: int, train: int, val: int, rng: random.Random) -> list[tuple[str, int]]:
    """(split, pool index) pairs: `train` and `val` images dealt evenly over the first `classes` classes."""
    chosen = []
    for c in range(classes):
        n_train = train // classes + (c < train % classes)
        n_val = val // classes + (c < val % classes)
        picks = rng.sample(np.flatnonzero(labels == c).tolist(), n_train + n_val)
        chosen += [("train", i) for i in picks[:n_train]] + [("val", i) for i in picks[n_train:]]
    return chosen


def encode(pixels: np.ndarray, rng: random.Random) -> tuple[bytes, str]:
    from PIL import Image

    size = (rng.randint(*SIZES), rng.randint(*SIZES))
    image = Image.fromarray(pixels).convert("RGB").resize(size, Image.BILINEAR)
    buffer = io.BytesIO()
    if rng.random() < 0.5:
        image.save(buffer, format="PNG")
        return buffer.getvalue(), ".png"
    image.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue(), ".jpg"


DS_STORE = b"\x00\x00\x00\x01Bud1" + bytes(64)


def junk(classes: list[str]) -> dict[str, bytes]:
    """What a real folder collects beside its images; none of it is an image to use."""
    return {
        "README.txt": b"Fashion-MNIST test images as an image folder (written by benchmarks/make_image_folder.py).\n",
        ".DS_Store": DS_STORE,
        "train/.DS_Store": DS_STORE,
        f"train/{classes[0]}/.DS_Store": DS_STORE,
        f"train/{classes[1]}/README.txt": b"notes\n",
        f"val/{classes[0]}/._00000.jpg": b"\x00\x05\x16\x07" + bytes(60),  # a macOS AppleDouble twin
        "val/.DS_Store": DS_STORE,
    }


def write_image_folder(
    out: Path,
    *,
    train: int,
    val: int,
    classes: int = len(CLASSES),
    corrupt: bool = False,
    seed: int = 0,
    source: Path = FASHION_MNIST,
) -> dict:
    """Write the folder; returns {"train": n, "val": n, "classes": [names], "junk": [paths], "corrupt": path or None}."""
    out = Path(out)
    if not 2 <= classes <= len(CLASSES):
        raise SystemExit(f"--classes must be in 2..{len(CLASSES)}")
    if train < classes or val < classes:
        raise SystemExit(f"--train and --val must be at least --classes ({classes}): every class gets images")
    images, labels = load_pool(Path(source), -(-(train + val) // classes))
    rng = random.Random(seed)
    for split, index in balanced_draw(labels, classes, train, val, rng):
        data, suffix = encode(images[index], rng)
        path = out / split / CLASSES[int(labels[index])] / f"{index:05d}{suffix}"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    extra = junk(CLASSES[:classes])
    for name, data in extra.items():
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_bytes(data)
    corrupt_path = None
    if corrupt:
        # A real JPEG cut halfway through its compressed data: the headers parse (opening it and
        # PIL's verify() succeed), only decoding runs out of data, as with an interrupted copy.
        from PIL import Image

        buffer = io.BytesIO()
        Image.fromarray(images[0]).convert("RGB").resize((48, 48)).save(buffer, format="JPEG", quality=90)
        data = buffer.getvalue()
        scan_start = data.index(b"\xff\xda")
        corrupt_path = out / "train" / CLASSES[rng.randrange(classes)] / "99999.jpg"
        corrupt_path.parent.mkdir(parents=True, exist_ok=True)
        corrupt_path.write_bytes(data[: (scan_start + len(data)) // 2])
    return {
        "train": train,
        "val": val,
        "classes": CLASSES[:classes],
        "junk": sorted(extra),
        "corrupt": None if corrupt_path is None else corrupt_path.relative_to(out).as_posix(),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--train", type=int, default=8000)
    parser.add_argument("--val", type=int, default=2000)
    parser.add_argument("--classes", type=int, default=len(CLASSES), help="use the first N Fashion-MNIST classes")
    parser.add_argument("--corrupt", action="store_true", help="add one truncated .jpg to train/")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--source", type=Path, default=FASHION_MNIST, help="folder with the Fashion-MNIST idx files")
    args = parser.parse_args(argv)
    if args.out.exists() and any(args.out.iterdir()):
        raise SystemExit(f"{args.out} is not empty; choose a new folder")
    summary = write_image_folder(
        args.out, train=args.train, val=args.val, classes=args.classes, corrupt=args.corrupt, seed=args.seed, source=args.source
    )
    print(
        f"wrote {summary['train']} + {summary['val']} images to {args.out}"
        + (f", corrupt: {summary['corrupt']}" if summary["corrupt"] else "")
    )


if __name__ == "__main__":
    main(sys.argv[1:])
