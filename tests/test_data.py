"""Preparing splits (slimnet.datasets) and loading them (slimnet.datasets.load), on Fashion-MNIST and on
small image folders written by benchmarks/make_image_folder.py."""

import json
from pathlib import Path

import pytest
import torch

from benchmarks.make_image_folder import write_image_folder
from slimnet.console.errors import SlimnetError
from slimnet.datasets import check, sources
from slimnet.datasets.check import check_image, find_invalid
from slimnet.datasets.load import fixed_batches, load_split
from slimnet.datasets.prepare import IMAGENET_MEAN, InvalidImages, prepare_full
from slimnet.datasets.projection import project_search

HAVE_FASHION_MNIST = sources.fashion_mnist_files(Path("/nonexistent")) is not None
requires_fashion_mnist = pytest.mark.skipif(
    not HAVE_FASHION_MNIST,
    reason=f"Fashion-MNIST idx files not in {sources.DEBIAN_FASHION_MNIST} (apt-get install -y dataset-fashion-mnist)",
)

VAL_FRACTION = 0.1
SEARCH_FRACTION = 0.05
PER_CLASS = 6000  # Fashion-MNIST training images per class
VAL_PER_CLASS = round(PER_CLASS * VAL_FRACTION)
SEARCH_PER_CLASS = round((PER_CLASS - VAL_PER_CLASS) * SEARCH_FRACTION)


def prepare_fashion(out_dir: Path, seed: int = 0) -> dict:
    summary = prepare_full(
        "fashion-mnist", out_dir / "no-such-root", out_dir, val_fraction=VAL_FRACTION, resolution=None, seed=seed
    )
    project_search(out_dir, resolution=14, fraction=SEARCH_FRACTION)
    return summary


def load_record(out_dir: Path, name: str) -> dict:
    return torch.load(out_dir / f"{name}.pt", weights_only=True)


@pytest.fixture(scope="module")
def fashion(tmp_path_factory) -> Path:
    out_dir = tmp_path_factory.mktemp("fashion")
    prepare_fashion(out_dir)
    return out_dir


@requires_fashion_mnist
def test_val_split_is_class_balanced(fashion):
    val = load_record(fashion, "full/val")
    train = load_record(fashion, "full/train")
    assert torch.bincount(val["labels"]).tolist() == [VAL_PER_CLASS] * 10
    assert torch.bincount(train["labels"]).tolist() == [PER_CLASS - VAL_PER_CLASS] * 10


@requires_fashion_mnist
def test_train_and_val_do_not_overlap(fashion):
    train = load_record(fashion, "full/train")
    val = load_record(fashion, "full/val")
    assert train["source_split"] == val["source_split"] == "train"
    train_idx, val_idx = set(train["indices"].tolist()), set(val["indices"].tolist())
    assert not train_idx & val_idx
    assert train_idx | val_idx == set(range(60000))


@requires_fashion_mnist
def test_test_split_is_official_test_set(fashion):
    test = load_record(fashion, "full/test")
    assert test["source_split"] == "test"
    assert test["images"].shape == (10000, 1, 28, 28)
    assert test["images"].dtype == torch.uint8
    assert test["labels"].dtype == torch.int64


@requires_fashion_mnist
def test_search_split_is_small_and_low_resolution(fashion):
    search_train = load_record(fashion, "search/train")
    search_val = load_record(fashion, "search/val")
    full_train = load_record(fashion, "full/train")
    full_val = load_record(fashion, "full/val")
    assert search_train["images"].shape[1:] == (1, 14, 14)
    assert search_val["images"].shape[1:] == (1, 14, 14)
    assert search_train["resolution"] == search_val["resolution"] == 14
    assert torch.bincount(search_train["labels"]).tolist() == [SEARCH_PER_CLASS] * 10
    assert set(search_train["indices"].tolist()) <= set(full_train["indices"].tolist())
    assert torch.equal(search_val["indices"], full_val["indices"])


@requires_fashion_mnist
def test_meta_describes_the_splits(fashion):
    meta = json.loads((fashion / "meta.json").read_text())
    assert meta["source"] == "fashion-mnist"
    assert meta["num_classes"] == 10 and meta["in_channels"] == 1
    assert meta["classes"][0] == "T-shirt/top"
    assert meta["counts"] == {"full/train": 54000, "full/val": 6000, "full/test": 10000}
    assert meta["resolution"] == meta["native_resolution"] == 28 and "search_resolution" not in meta
    assert 0.2 < meta["mean"][0] < 0.4 and 0.25 < meta["std"][0] < 0.45
    search = json.loads((fashion / "search" / "meta.json").read_text())
    assert search["counts"] == {"search/train": 10 * SEARCH_PER_CLASS, "search/val": 6000}
    assert (search["search_resolution"], search["resized_from"], search["num_classes"], search["in_channels"]) == (
        14,
        "native",
        10,
        1,
    )
    # Only the final files remain: every temporary file was renamed into place.
    assert sorted(p.relative_to(fashion).as_posix() for p in fashion.rglob("*") if p.is_file()) == [
        "full/test.pt",
        "full/train.pt",
        "full/val.pt",
        "meta.json",
        "search/meta.json",
        "search/train.pt",
        "search/val.pt",
    ]


@requires_fashion_mnist
def test_a_new_projection_leaves_the_full_splits_alone(fashion, tmp_path):
    before = {p: p.read_bytes() for p in sorted((fashion / "full").iterdir())} | {
        fashion / "meta.json": (fashion / "meta.json").read_bytes()
    }
    copy = tmp_path / "copy"
    (copy / "full").mkdir(parents=True)
    for path, data in before.items():
        (copy / path.relative_to(fashion)).write_bytes(data)
    project_search(copy, resolution=10, fraction=SEARCH_FRACTION)
    assert {p: (copy / p.relative_to(fashion)).read_bytes() for p in before} == before
    # Same images as at 14 px (the draw depends on the data seed and the fraction only), smaller.
    assert torch.equal(load_record(copy, "search/train")["indices"], load_record(fashion, "search/train")["indices"])
    assert load_record(copy, "search/train")["images"].shape[1:] == (1, 10, 10)


@requires_fashion_mnist
def test_splits_are_deterministic_per_seed(fashion, tmp_path):
    prepare_fashion(tmp_path / "same", seed=0)
    prepare_fashion(tmp_path / "other", seed=1)
    for name in ("full/val", "search/train"):
        reference = load_record(fashion, name)
        same = load_record(tmp_path / "same", name)
        other = load_record(tmp_path / "other", name)
        assert torch.equal(reference["indices"], same["indices"])
        assert torch.equal(reference["images"], same["images"])
        assert not torch.equal(reference["indices"], other["indices"])


@requires_fashion_mnist
def test_batches_are_normalized_channels_last(fashion):
    train = load_split(fashion / "full/train.pt")
    assert (train.num_classes, train.in_channels, train.resolution, len(train)) == (10, 1, 28, 54000)
    generator = torch.Generator().manual_seed(0)
    images, labels = [], []
    for x, y in train.batches(500, shuffle=True, augment=False, generator=generator, limit=3000):
        assert x.shape == (500, 1, 28, 28) and x.dtype == torch.float32
        assert x.is_contiguous(memory_format=torch.channels_last)
        assert y.dtype == torch.int64 and y.shape == (500,)
        images.append(x)
        labels.append(y)
    images = torch.cat(images)
    assert abs(images.mean().item()) < 0.05
    assert abs(images.std().item() - 1) < 0.05
    assert len(torch.cat(labels).unique()) == 10


@requires_fashion_mnist
def test_augment_changes_images_but_keeps_shape(fashion):
    val = load_split(fashion / "full/val.pt")
    plain, _ = next(val.batches(64, shuffle=False, augment=False))
    generator = torch.Generator().manual_seed(0)
    augmented, _ = next(val.batches(64, shuffle=False, augment=True, generator=generator))
    assert augmented.shape == plain.shape
    assert augmented.is_contiguous(memory_format=torch.channels_last)
    assert not torch.equal(augmented, plain)
    # Same seed, same crops and flips.
    again, _ = next(val.batches(64, shuffle=False, augment=True, generator=torch.Generator().manual_seed(0)))
    assert torch.equal(again, augmented)


@requires_fashion_mnist
def test_limit_and_drop_last(fashion):
    val = load_split(fashion / "search/val.pt")
    sizes = [len(y) for _, y in val.batches(300, shuffle=False, augment=False, limit=1000)]
    assert sizes == [300, 300, 300, 100]
    sizes = [len(y) for _, y in val.batches(300, shuffle=True, augment=False, limit=1000, drop_last=True)]
    assert sizes == [300, 300, 300]
    first, _ = next(val.batches(10, shuffle=False, augment=False, limit=10))
    assert first.shape == (10, 1, 14, 14)


@requires_fashion_mnist
def test_fixed_batches_are_deterministic_and_balanced(fashion):
    val = load_split(fashion / "full/val.pt")
    batches = fixed_batches(val, 1000, 256, seed=3)
    assert [len(y) for _, y in batches] == [256, 256, 256, 232]
    labels = torch.cat([y for _, y in batches])
    assert torch.bincount(labels).tolist() == [100] * 10
    again = fixed_batches(val, 1000, 256, seed=3)
    assert all(torch.equal(a[0], b[0]) for a, b in zip(batches, again))
    assert sum(len(y) for _, y in fixed_batches(val.subset(torch.arange(50)), 1000, 256, seed=3)) == 50


@requires_fashion_mnist
def test_a_skipped_sample_is_the_next_one_disjoint_and_balanced(fashion):
    val = load_split(fashion / "full/val.pt")
    both = torch.cat([x for x, _ in fixed_batches(val, 2000, 1000, seed=3)])
    first = fixed_batches(val, 1000, 1000, seed=3)
    second = fixed_batches(val, 1000, 1000, seed=3, skip=1000)
    # One order, two consecutive stretches of it: the second sample shares no image with the first.
    assert torch.equal(both[:1000], first[0][0]) and torch.equal(both[1000:], second[0][0])
    assert torch.bincount(second[0][1]).tolist() == [100] * 10
    assert not fixed_batches(val, 1000, 1000, seed=3, skip=len(val))  # nothing left: empty, the caller says so


def test_missing_fashion_mnist_explains_the_fix(tmp_path, monkeypatch):
    import torchvision.datasets

    def no_network(self):
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz")

    monkeypatch.setattr(sources, "DEBIAN_FASHION_MNIST", tmp_path / "not-installed")
    monkeypatch.setattr(torchvision.datasets.FashionMNIST, "download", no_network)
    out_dir = tmp_path / "out"
    with pytest.raises(SlimnetError, match="apt-get install -y dataset-fashion-mnist") as info:
        prepare_full("fashion-mnist", tmp_path / "missing", out_dir, val_fraction=0.1, resolution=None, seed=0)
    message = str(info.value)
    assert "\n" not in message and "network" in message
    assert not out_dir.exists()


# --------------------------------------------------------------------------- image folders

CLASSES = ["Pullover", "T-shirt-top", "Trouser"]  # the generator's first three, sorted


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """30 + 9 images of 3 classes, plus README.txt, .DS_Store and ._x.jpg junk."""
    root = tmp_path_factory.mktemp("folder") / "images"
    write_image_folder(root, train=30, val=9, classes=3)
    return root


def image_files(root: Path) -> list[str]:
    return sorted(
        p.relative_to(root).as_posix() for p in root.rglob("*") if p.suffix in (".png", ".jpg") and not p.name.startswith(".")
    )


@requires_fashion_mnist
def test_image_folder_through_data_and_project(folder, tmp_path):
    out = tmp_path / "data"
    summary = prepare_full("imagefolder", folder, out, val_fraction=0.2, resolution=16, seed=0)
    assert summary["counts"] == {"full/train": 24, "full/val": 6, "full/test": 9}
    assert (summary["checked"], summary["skipped"], summary["ignored"]) == (39, 0, 7)
    meta = json.loads((out / "meta.json").read_text())
    assert meta["classes"] == CLASSES and meta["mean"] == IMAGENET_MEAN and meta["resolution"] == 16
    assert meta["skipped"] == {"count": 0, "files": []}
    records = {name: load_record(out, f"full/{name}") for name in ("train", "val", "test")}
    # Every image is used exactly once; the junk (README.txt, .DS_Store, ._00000.jpg) never.
    used = sorted(p for r in records.values() for p in r["paths"])
    assert used == image_files(folder) and len(used) == 39
    assert all(p.startswith("val/") for p in records["test"]["paths"])
    assert torch.bincount(records["val"]["labels"]).tolist() == [2, 2, 2]
    assert records["test"]["paths"][0].startswith(f"val/{CLASSES[0]}/")

    project = project_search(out, resolution=8, fraction=0.5)
    assert project["counts"] == {"search/train": 12, "search/val": 6}
    search_meta = json.loads((out / "search" / "meta.json").read_text())
    assert (search_meta["search_resolution"], search_meta["resized_from"], search_meta["num_classes"]) == (8, "files", 3)
    assert set(load_record(out, "search/train")["paths"]) <= set(records["train"]["paths"])

    train = load_split(out / "full/train.pt")
    assert (train.num_classes, train.in_channels, train.resolution, len(train)) == (3, 3, 16, 24)
    train.num_workers = 0  # worker processes would only slow this tiny test down
    shapes = [
        tuple(x.shape) for x, _ in train.batches(16, shuffle=True, augment=True, generator=torch.Generator().manual_seed(0))
    ]
    assert shapes == [(16, 3, 16, 16), (8, 3, 16, 16)]
    search = load_split(out / "search/train.pt")
    search.num_workers = 0
    x, y = next(search.batches(4, shuffle=False, augment=False))
    assert x.shape == (4, 3, 8, 8) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert x.is_contiguous(memory_format=torch.channels_last)


@requires_fashion_mnist
def test_bad_images_stop_preparation_with_their_names(tmp_path):
    root = tmp_path / "images"
    truncated = write_image_folder(root, train=12, val=3, classes=3, corrupt=True)["corrupt"]
    (root / "val" / "Trouser" / "garbage.jpg").write_bytes(b"definitely not a JPEG" * 10)
    out = tmp_path / "data"
    with pytest.raises(InvalidImages) as info:
        prepare_full("imagefolder", root, out, val_fraction=0.25, resolution=16, seed=0)
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"2 of 17 images in {root} cannot be decoded: ")
    assert f"{truncated} (image file is truncated" in message and "val/Trouser/garbage.jpg (not an image" in message
    assert not out.exists()

    summary = prepare_full("imagefolder", root, out, val_fraction=0.25, resolution=16, seed=0, skip_invalid=True)
    assert summary["skipped"] == 2 and summary["counts"] == {"full/train": 9, "full/val": 3, "full/test": 3}
    meta = json.loads((out / "meta.json").read_text())
    assert meta["skipped"]["count"] == 2
    assert [line.split(":")[0] for line in meta["skipped"]["files"]] == sorted([truncated, "val/Trouser/garbage.jpg"])
    used = [p for name in ("train", "val", "test") for p in load_record(out, f"full/{name}")["paths"]]
    assert truncated not in used and "val/Trouser/garbage.jpg" not in used


@requires_fashion_mnist
def test_check_catches_truncated_and_garbage_files(folder, tmp_path, monkeypatch):
    from PIL import Image

    good = image_files(folder)
    assert all(check_image(str(folder / p)) is None for p in good)
    jpeg = (folder / next(p for p in good if p.endswith(".jpg"))).read_bytes()
    png = (folder / next(p for p in good if p.endswith(".png"))).read_bytes()
    scan_start = jpeg.index(b"\xff\xda")
    cases = {
        "cut.jpg": jpeg[: (scan_start + len(jpeg)) // 2],  # headers intact: PIL's verify() would pass it
        "cut.png": png[: len(png) // 2],
        "garbage.jpg": bytes(range(256)) * 4,
        "empty.png": b"",
    }
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
    with Image.open(tmp_path / "cut.jpg") as image:
        image.verify()
    reasons = {name: check_image(str(tmp_path / name)) for name in cases}
    assert all(reasons.values()), reasons
    assert "truncated" in reasons["cut.jpg"]
    # Pools of threads and of processes find the same files; the result is sorted by path.
    monkeypatch.setattr(check, "CHUNK", 2)
    monkeypatch.setattr(check, "SMALL", 0)
    for i, name in enumerate(good[:6]):
        (tmp_path / f"good{i}{Path(name).suffix}").write_bytes((folder / name).read_bytes())
    paths = sorted(p.name for p in tmp_path.iterdir())
    bad_threads = find_invalid(tmp_path, paths, workers=2, kind="thread")
    assert [p for p, _ in bad_threads] == sorted(cases)
    assert find_invalid(tmp_path, paths, workers=2, kind="process") == bad_threads
    assert find_invalid(tmp_path, paths, workers=1) == bad_threads


@requires_fashion_mnist
def test_a_file_broken_after_the_data_stage_fails_in_one_line(folder, tmp_path):
    import shutil

    root = tmp_path / "images"
    shutil.copytree(folder, root)
    prepare_full("imagefolder", root, tmp_path / "data", val_fraction=0.2, resolution=16, seed=0)
    test = load_split(tmp_path / "data" / "full/test.pt")
    assert test.num_workers >= 1
    broken = root / test.paths[4]
    broken.write_bytes(b"overwritten")
    test.num_workers = 1  # the error happens in a DataLoader worker process
    with pytest.raises(SlimnetError) as info:
        list(test.batches(4, shuffle=False, augment=False))
    message = str(info.value)
    assert "\n" not in message and "Traceback" not in message
    assert message.startswith(f"cannot read image {broken} (") and "dvc repro" in message


def test_image_folder_structure_errors(tmp_path):
    def prepare(root: Path):
        return prepare_full("imagefolder", root, tmp_path / "out", val_fraction=0.25, resolution=16, seed=0)

    with pytest.raises(SlimnetError, match="not found"):
        prepare(tmp_path / "missing")
    root = tmp_path / "images"
    root.mkdir()
    with pytest.raises(SlimnetError, match="no train/ directory"):
        prepare(root)
    (root / "train" / "cat").mkdir(parents=True)
    with pytest.raises(SlimnetError, match="no val/ or test/"):
        prepare(root)
    (root / "test" / "cat").mkdir(parents=True)
    with pytest.raises(SlimnetError, match="at least 2 class folders"):
        prepare(root)
    (root / "train" / "dog").mkdir()
    (root / "test" / "bird").mkdir()
    with pytest.raises(SlimnetError, match="missing from train/: bird"):
        prepare(root)
    (root / "test" / "bird").rmdir()
    with pytest.raises(SlimnetError, match="without training images in .*: cat, dog"):
        prepare(root)
    assert not (tmp_path / "out").exists()
