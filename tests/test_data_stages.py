"""The data-side stages on a user's image folder: scan sees every change that matters (and nothing
else), data stops on a bad image in one line or skips it on request, project depends on the
projection only, and DVC reruns data exactly when the folder's images change."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from benchmarks.make_image_folder import write_image_folder
from slimnet.cli import app
from tests.realdata import needs_fashion_mnist

REPO = Path(__file__).resolve().parents[1]
pytestmark = [needs_fashion_mnist, pytest.mark.slow]
runner = CliRunner()


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    """A pristine folder: 30 + 9 images of 3 classes and the usual junk; tests copy it."""
    root = tmp_path_factory.mktemp("pristine") / "images"
    write_image_folder(root, train=30, val=9, classes=3)
    return root


def make_project(tmp_path: Path, images: Path, **data) -> Path:
    """A project folder with params.yaml pointing at a private copy of `images`."""
    project = tmp_path / "project"
    project.mkdir()
    root = tmp_path / "images"
    shutil.copytree(images, root)
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["data"].update(source="imagefolder", root=str(root), resolution=16, val_fraction=0.2, **data)
    params["transfer"].update(resolution=8, data_fraction=0.5)
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return project


def cli(project: Path, monkeypatch, *args: str):
    monkeypatch.chdir(project)
    return runner.invoke(app, list(args))


def error_line(stderr: str) -> str:
    """The one error line, last on stderr (progress lines may come before it)."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], stderr
    return errors[0]


def scan_bytes(project: Path, monkeypatch) -> bytes:
    result = cli(project, monkeypatch, "scan")
    assert result.exit_code == 0, result.output
    return (project / "data" / "source.json").read_bytes()


# --------------------------------------------------------------------------- scan


def test_scan_manifest_changes_exactly_when_the_images_do(tmp_path, images, monkeypatch):
    project = make_project(tmp_path, images)
    root = tmp_path / "images"
    first = scan_bytes(project, monkeypatch)
    assert scan_bytes(project, monkeypatch) == first  # nothing touched: byte-identical
    manifest = json.loads(first)
    assert manifest["images"] == {"train": 30, "val": 9} and manifest["classes"] == 3
    assert len(first) < 400  # small enough for git at any folder size

    # Junk is never read, so it never reruns the data stage.
    (root / "train" / "Trouser" / "notes.txt").write_text("x")
    (root / "val" / ".DS_Store").write_bytes(b"changed")
    assert scan_bytes(project, monkeypatch) == first

    one = sorted((root / "train" / "Trouser").glob("*.png"))[0]
    data, stat = one.read_bytes(), one.stat()
    one.unlink()
    removed = scan_bytes(project, monkeypatch)
    assert removed != first and json.loads(removed)["images"]["train"] == 29
    one.write_bytes(data)
    os.utime(one, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert scan_bytes(project, monkeypatch) == first  # put back as it was

    one.write_bytes(data + b"\0")  # replaced (other bytes, other size)
    os.utime(one, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert scan_bytes(project, monkeypatch) != first
    one.write_bytes(data)
    os.utime(one, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # replaced, same size, newer
    assert scan_bytes(project, monkeypatch) != first

    shutil.copy(one, root / "val" / "Trouser" / "extra.png")  # added
    assert json.loads(scan_bytes(project, monkeypatch))["images"]["val"] == 10


def test_fashion_mnist_manifest_is_a_content_hash(tmp_path, monkeypatch):
    (tmp_path / "params.yaml").write_text(f"data:\n  root: {tmp_path / 'raw'}\n")
    manifest = json.loads(scan_bytes(tmp_path, monkeypatch))
    assert manifest["source"] == "fashion-mnist" and len(manifest["files"]) == 4
    assert all(len(f["sha256"]) == 64 and f["bytes"] > 0 for f in manifest["files"].values())
    assert "/" not in json.dumps(manifest)  # no machine-specific paths


# --------------------------------------------------------------------------- data


def test_a_bad_image_stops_the_data_stage_in_one_line(tmp_path, images, monkeypatch):
    project = make_project(tmp_path, images)
    bad = tmp_path / "images" / "train" / "Pullover" / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a JPEG")
    assert cli(project, monkeypatch, "scan").exit_code == 0
    result = subprocess.run(
        [sys.executable, "-m", "slimnet", "data"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert result.returncode == 2, result.stdout + result.stderr
    line = error_line(result.stderr)
    assert "1 of 40 images" in line and "train/Pullover/broken.jpg" in line
    assert "remove or replace them, or set data.skip_invalid: true" in line
    assert sorted(p.name for p in (project / "data").iterdir()) == ["source.json"]  # nothing written


def test_skip_invalid_leaves_bad_images_out_and_says_so(tmp_path, images, monkeypatch):
    project = make_project(tmp_path, images, skip_invalid=True)
    (tmp_path / "images" / "val" / "Trouser" / "empty.png").write_bytes(b"")
    assert cli(project, monkeypatch, "scan").exit_code == 0
    result = cli(project, monkeypatch, "data")
    assert result.exit_code == 0, result.output
    assert '"skipped": 1' in result.stdout and "left out 1 image " in result.stdout
    meta = json.loads((project / "data" / "meta.json").read_text())
    assert meta["skipped"] == {"count": 1, "files": ["val/Trouser/empty.png: not an image file PIL can read"]}
    assert meta["counts"] == {"full/train": 24, "full/val": 6, "full/test": 9}


def test_data_refuses_a_folder_that_changed_since_the_scan(tmp_path, images, monkeypatch):
    project = make_project(tmp_path, images)
    result = cli(project, monkeypatch, "data")
    assert result.exit_code == 2 and "python -m slimnet scan" in result.stderr
    assert cli(project, monkeypatch, "scan").exit_code == 0
    next((tmp_path / "images" / "val").glob("*/*.jpg")).unlink()
    result = cli(project, monkeypatch, "data")
    assert result.exit_code == 2 and "changed since the scan" in result.stderr
    assert not (project / "data" / "meta.json").exists()


def test_project_depends_on_the_projection_only(tmp_path, images, monkeypatch):
    project = make_project(tmp_path, images)
    for command in ("scan", "data", "project"):
        result = cli(project, monkeypatch, command)
        assert result.exit_code == 0, result.output
    data = project / "data"
    full = {p: p.read_bytes() for p in [*sorted((data / "full").iterdir()), data / "meta.json"]}
    search_meta = json.loads((data / "search" / "meta.json").read_text())
    assert search_meta["counts"] == {"search/train": 12, "search/val": 6} and search_meta["search_resolution"] == 8

    params = yaml.safe_load((project / "params.yaml").read_text())
    params["transfer"]["resolution"] = 12
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert cli(project, monkeypatch, "project").exit_code == 0
    assert {p: p.read_bytes() for p in full} == full
    assert json.loads((data / "search" / "meta.json").read_text())["search_resolution"] == 12


# --------------------------------------------------------------------------- the pipeline


def test_stages_see_only_their_own_inputs():
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    assert stages["scan"]["always_changed"] is True
    assert stages["data"]["params"] == ["data"] and "data/source.json" in stages["data"]["deps"]
    assert stages["project"]["params"] == ["transfer.resolution", "transfer.data_fraction"]
    assert {"data/full", "data/meta.json"} <= set(stages["project"]["deps"])
    for name, stage in stages.items():
        if name in ("scan", "data", "project"):
            continue
        deps = stage.get("deps") or stage["do"]["deps"]
        # The loader (datasets/load.py) is every training stage's; the preparation code is not.
        assert not [d for d in deps if d.startswith("slimnet/datasets") and d != "slimnet/datasets/load.py"], name
    # ... and the code agrees: no other stage imports the preparation code.
    code = (
        "import sys, slimnet.cli, slimnet.pipeline.supernet, slimnet.pipeline.search, slimnet.pipeline.extrapolate, "
        "slimnet.pipeline.train, slimnet.pipeline.evaluate; "
        "print(sorted(m for m in sys.modules if m.startswith('slimnet.datasets.') and m != 'slimnet.datasets.load'))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stdout + out.stderr


def dvc(project: Path, *args: str) -> str:
    result = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=project, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


def test_dvc_reruns_data_when_an_image_goes_and_not_for_junk(tmp_path, images, monkeypatch):
    project = make_project(tmp_path, images)
    shutil.copytree(REPO / "slimnet", project / "slimnet", ignore=shutil.ignore_patterns("__pycache__"))
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    (project / "dvc.yaml").write_text(yaml.safe_dump({"stages": {k: stages[k] for k in ("scan", "data")}}, sort_keys=False))
    dvc(project, "init", "--no-scm", "-q")
    dvc(project, "repro")
    assert "data:" not in dvc(project, "status")  # only the always-changed scan

    # `dvc repro` runs the scan first; `dvc status` alone cannot look into the folder, so the
    # test runs the scan itself (in-process: same command, faster) before asking for the status.
    root = tmp_path / "images"
    (root / "train" / "Trouser" / "Thumbs.db").write_bytes(b"junk")
    scan_bytes(project, monkeypatch)
    assert "data:" not in dvc(project, "status")

    sorted((root / "train" / "Trouser").glob("*.jpg"))[0].unlink()
    scan_bytes(project, monkeypatch)
    status = dvc(project, "status")
    assert "data:" in status and "data/source.json" in status, status
