"""Shared by every pipeline stage: paths, device choice, small file helpers (nothing about networks,
so the data stages do not depend on the model code)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import TYPE_CHECKING

from slimnet import atomic
from slimnet.console.errors import SlimnetError
from slimnet.pipeline.data_paths import DATA  # noqa: F401 -- re-exported: one data folder for every stage

if TYPE_CHECKING:
    import torch

STAGES = Path("stages")
CHECKPOINTS = Path(".checkpoints")  # resumable training state, removed once a stage finishes
OPTIMIZER_NETWORKS = {  # the network each search.method's training stage writes, which its search reads
    "autoslim": STAGES / "supernet" / "supernet.pt",
    "morphnet": STAGES / "morphnet" / "network.pt",
    "dmcp": STAGES / "dmcp" / "network.pt",
}
SUPERNET_METHODS = ("autoslim", "dmcp")  # the optimizers that start from the sandwich-trained supernet
VARIANTS = ("optimized", "uniform", "random")  # what extrapolate writes; train.variants picks the trained ones
TIMINGS = "timings.json"  # untracked, see write_timings


def trained_model(variant: str, seed: int) -> Path:
    """Where the train stage writes a variant's model for one seed: every reader takes it from here."""
    return STAGES / "train" / variant / str(seed) / "model.pt"


def variant_spec(variant: str) -> Path:
    """The arch spec a variant was trained from."""
    return STAGES / "extrapolate" / f"{variant}.json"


def pick_device(name: str = "auto") -> torch.device:
    import torch  # here: the stages that read and write JSON only (scan, report) start without torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise SlimnetError(f"--device {name}: CUDA is not available on this machine; use --device cpu or auto")
    return torch.device(name)


def read_json(path: Path, produced_by: str) -> dict:
    if not path.is_file():
        raise SlimnetError(f"{path} not found: run `dvc repro {produced_by}` first")
    return json.loads(path.read_text())


def write_csv(path: Path, rows: list[dict]) -> None:
    if not rows:  # a stage that did not run (another search.method): an empty file
        atomic.write_text(path, "")
        return
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic.write_text(path, buffer.getvalue())


def write_timings(stage_dir: Path, timings: dict) -> None:
    """Wall-clock figures of a run, beside (never inside) the stage's DVC outputs: they differ on
    every run, and a tracked file that changes bytes would make DVC rerun what depends on it."""
    atomic.write_json(stage_dir / TIMINGS, timings)
