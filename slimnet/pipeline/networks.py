"""The networks of each variant: one for optimized and uniform, one per draw for random.

extrapolate writes every draw's spec into one file, stages/extrapolate/random.json
({"random-0": spec, ...}), and the train stage of the random variant trains every draw with its
seed into one model.pt ({"networks": {"random-0": {"spec", "model"}, ...}}): the DVC matrix stays
train.variants x train.seeds, and a stage's deps and outs are the same paths for every variant.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from slimnet import atomic
from slimnet.console.errors import SlimnetError
from slimnet.pipeline.common import variant_spec
from slimnet.space.spec import ArchSpec, load_spec


def random_name(draw: int) -> str:
    """The name of the random network of draw seed ``draw`` (in every file that lists networks)."""
    return f"random-{draw}"


def save_random_specs(specs: dict[str, ArchSpec], path: Path) -> None:
    atomic.write_json(path, {name: spec.model_dump(mode="json") for name, spec in specs.items()})


def variant_specs(variant: str) -> dict[str, ArchSpec]:
    """The specs a variant trains, by network name: {"optimized": ...}, or one per random draw."""
    path = variant_spec(variant)
    if variant != "random":
        return {variant: load_spec(path)}
    if not path.is_file():
        raise SlimnetError(f"{path} not found: run `dvc repro extrapolate` first")
    raw = json.loads(path.read_text())
    if not raw or not all(isinstance(spec, dict) and "channels" in spec for spec in raw.values()):
        raise SlimnetError(f"{path} is not a set of random draws: rerun `dvc repro extrapolate`")
    return {name: ArchSpec.model_validate(spec) for name, spec in raw.items()}


def trained_blob(networks: dict[str, tuple[ArchSpec, dict]], variant: str) -> dict:
    """What a train stage writes to model.pt: one network's spec and weights, or (random) every draw's."""
    entries = {name: {"spec": spec.model_dump(mode="json"), "model": state} for name, (spec, state) in networks.items()}
    return entries[variant] if variant != "random" else {"networks": entries}


def trained_states(path: Path, variant: str) -> dict[str, tuple[ArchSpec, dict]]:
    """A train stage's model.pt as {network name: (spec, weights)}."""
    if not path.is_file():
        raise SlimnetError(f"{path} not found: run `dvc repro train` first")
    blob = torch.load(path, map_location="cpu", weights_only=False)
    entries = blob["networks"] if "networks" in blob else {variant: blob}
    return {name: (ArchSpec.model_validate(entry["spec"]), entry["model"]) for name, entry in entries.items()}


def draw_of(name: str) -> int | None:
    """The draw seed of a random network's name (None for optimized and uniform)."""
    prefix = random_name(0)[:-1]
    return int(name[len(prefix) :]) if name.startswith(prefix) else None
