import json
from pathlib import Path

import pytest
import torch

from slimnet import data
from slimnet.data import fixed_batches, load_split, prepare_data
from slimnet.errors import SlimnetError

HAVE_FASHION_MNIST = data._idx_files(data.DEBIAN_FASHION_MNIST) is not None
requires_fashion_mnist = pytest.mark.skipif(
    not HAVE_FASHION_MNIST,
    reason=f"Fashion-MNIST idx files not in {data.DEBIAN_FASHION_MNIST} (apt-get install -y dataset-fashion-mnist)",
)

VAL_FRACTION = 0.1
SEARCH_FRACTION = 0.05
PER_CLASS = 6000  # Fashion-MNIST training images per class
VAL_PER_CLASS = round(PER_CLASS * VAL_FRACTION)
SEARCH_PER_CLASS = round((PER_CLASS - VAL_PER_CLASS) * SEARCH_FRACTION)


def prepare_fashion(out_dir: Path, seed: int = 0) -> dict:
    return prepare_data(
        "fashion-mnist",
        out_dir / "no-such-root",
        out_dir,
        val_fraction=VAL_FRACTION,
        resolution=None,
        search_resolution=14,
        search_fraction=SEARCH_FRACTION,
        seed=seed,
    )


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
    assert meta["counts"] == {
        "full/train": 54000,
        "full/val": 6000,
        "full/test": 10000,
        "search/train": 10 * SEARCH_PER_CLASS,
        "search/val": 6000,
    }
    assert meta["resolution"] == 28 and meta["search_resolution"] == 14
    assert 0.2 < meta["mean"][0] < 0.4 and 0.25 < meta["std"][0] < 0.45
    # Only the final files remain: every temporary file was renamed into place.
    assert sorted(p.name for p in fashion.rglob("*") if p.is_file()) == [
        "meta.json",
        "test.pt",
        "train.pt",
        "train.pt",
        "val.pt",
        "val.pt",
    ]


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


def test_missing_fashion_mnist_explains_the_fix(tmp_path, monkeypatch):
    import torchvision.datasets

    def no_network(self):
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz")

    monkeypatch.setattr(data, "DEBIAN_FASHION_MNIST", tmp_path / "not-installed")
    monkeypatch.setattr(torchvision.datasets.FashionMNIST, "download", no_network)
    out_dir = tmp_path / "out"
    with pytest.raises(SlimnetError, match="apt-get install -y dataset-fashion-mnist") as info:
        prepare_data(
            "fashion-mnist",
            tmp_path / "missing",
            out_dir,
            val_fraction=0.1,
            resolution=None,
            search_resolution=None,
            search_fraction=0.1,
            seed=0,
        )
    message = str(info.value)
    assert "\n" not in message and "network" in message
    assert not out_dir.exists()


@pytest.mark.parametrize("value", [0, 1.5, -0.1, float("nan")])
def test_bad_search_fraction_is_rejected_before_writing(tmp_path, value):
    out_dir = tmp_path / "out"
    with pytest.raises(SlimnetError, match="search_fraction"):
        prepare_data(
            "fashion-mnist",
            tmp_path,
            out_dir,
            val_fraction=0.1,
            resolution=None,
            search_resolution=None,
            search_fraction=value,
            seed=0,
        )
    assert not out_dir.exists()


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"val_fraction": 1.0}, "val_fraction"),
        ({"resolution": 0}, "resolution"),
        ({"search_resolution": -4}, "search_resolution"),
    ],
)
def test_other_bad_arguments_name_the_argument(tmp_path, kwargs, name):
    args = {"val_fraction": 0.1, "resolution": None, "search_resolution": None, "search_fraction": 0.5, "seed": 0}
    args.update(kwargs)
    with pytest.raises(SlimnetError, match=f"^{name} "):
        prepare_data("fashion-mnist", tmp_path, tmp_path / "out", **args)
    assert not (tmp_path / "out").exists()


def make_image_folder(root: Path) -> None:
    from PIL import Image

    generator = torch.Generator().manual_seed(0)
    for split, count in (("train", 4), ("val", 2)):
        for name in ("cat", "dog"):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                # Odd, non-square sizes check that every image is resized to the same shape.
                pixels = torch.randint(0, 256, (18 + i, 23, 3), dtype=torch.uint8, generator=generator)
                Image.fromarray(pixels.numpy()).save(folder / f"{i}.png")


def test_image_folder_prepares_and_batches(tmp_path):
    root = tmp_path / "images"
    make_image_folder(root)
    out_dir = tmp_path / "prepared"
    summary = prepare_data(
        "imagefolder", root, out_dir, val_fraction=0.25, resolution=16, search_resolution=8, search_fraction=0.5, seed=0
    )
    assert summary["counts"] == {"full/train": 6, "full/val": 2, "full/test": 4, "search/train": 4, "search/val": 2}
    meta = json.loads((out_dir / "meta.json").read_text())
    assert meta["classes"] == ["cat", "dog"] and meta["mean"] == data.IMAGENET_MEAN

    record = load_record(out_dir, "full/test")
    assert record["kind"] == "folder" and record["paths"][0] == "val/cat/0.png"

    train = load_split(out_dir / "full/train.pt")
    assert (train.num_classes, train.in_channels, train.resolution, len(train)) == (2, 3, 16, 6)
    train.num_workers = 0  # worker processes would only slow this tiny test down
    shapes = [tuple(x.shape) for x, _ in train.batches(4, shuffle=True, augment=True, generator=torch.Generator().manual_seed(0))]
    assert shapes == [(4, 3, 16, 16), (2, 3, 16, 16)]

    search = load_split(out_dir / "search/train.pt")
    x, y = next(search.batches(4, shuffle=False, augment=False))
    assert x.shape == (4, 3, 8, 8) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert x.is_contiguous(memory_format=torch.channels_last)


def test_image_folder_with_workers(tmp_path):
    root = tmp_path / "images"
    make_image_folder(root)
    prepare_data(
        "imagefolder",
        root,
        tmp_path / "out",
        val_fraction=0.25,
        resolution=16,
        search_resolution=None,
        search_fraction=1.0,
        seed=0,
    )
    test = load_split(tmp_path / "out" / "full/test.pt")
    assert test.num_workers >= 1
    batches = fixed_batches(test, 3, 2, seed=0)
    assert [tuple(x.shape) for x, _ in batches] == [(2, 3, 16, 16), (1, 3, 16, 16)]


def test_image_folder_errors(tmp_path):
    with pytest.raises(SlimnetError, match="train/"):
        prepare_data(
            "imagefolder",
            tmp_path,
            tmp_path / "out",
            val_fraction=0.25,
            resolution=16,
            search_resolution=None,
            search_fraction=1.0,
            seed=0,
        )
    with pytest.raises(SlimnetError, match="resolution is required"):
        prepare_data(
            "imagefolder",
            tmp_path,
            tmp_path / "out",
            val_fraction=0.25,
            resolution=None,
            search_resolution=None,
            search_fraction=1.0,
            seed=0,
        )
    assert not (tmp_path / "out").exists()
