"""Reading trained networks back: a train stage's model.pt, or the slimmable stage's."""

from __future__ import annotations

from pathlib import Path

import torch

from slimnet.console.errors import SlimnetError
from slimnet.nn.network import Network
from slimnet.nn.switchable import SlimmableNetwork
from slimnet.space.spec import ArchSpec
from slimnet.training.no_network import no_network_reason


def load_trained(spec: ArchSpec, model_path: Path) -> Network:
    """The plain network of ``spec`` with the weights in ``model_path`` (a train stage's model.pt
    or a bare state dict), in eval mode; a model.pt trained for another spec is refused."""
    model_path = Path(model_path)
    if not model_path.is_file():
        raise SlimnetError(f"model {model_path} not found: train one first (`dvc repro train`)")
    blob = torch.load(model_path, map_location="cpu", weights_only=False)
    state = blob.get("model", blob) if isinstance(blob, dict) else None
    if not isinstance(state, dict):
        raise SlimnetError(f"model {model_path}: expected a train stage's model.pt (spec + weights) or a state dict")
    saved = blob.get("spec") if isinstance(blob, dict) else None
    if saved is not None and ArchSpec.model_validate(saved).channels != spec.channels:
        raise SlimnetError(f"model {model_path} was trained for other channels than the spec: pass the spec it was trained with")
    model = Network(spec.blueprint())
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        first = str(error).strip().splitlines()[-1].strip()
        raise SlimnetError(f"model {model_path} does not fit the spec ({first}): pass the spec it was trained with") from None
    return model.eval()


def save_slimmable_blob(model: SlimmableNetwork, targets: list[int]) -> dict:
    """What the slimmable stage writes: targets, one spec per width (widest first), weights."""
    return {
        "targets": list(targets),
        "specs": [spec.model_dump(mode="json") for spec in model.specs],
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
    }


def load_slimmable(path: Path) -> tuple[SlimmableNetwork | None, list[int]]:
    """The slimmable stage's network and its targets; None when the stage was off (no targets)."""
    path = Path(path)
    if not path.is_file():
        raise SlimnetError(f"{path} not found: run `dvc repro slimmable` first")
    if no_network_reason(path) is not None:  # the stage was off
        return None, []
    blob = torch.load(path, map_location="cpu", weights_only=False)
    model = SlimmableNetwork([ArchSpec.model_validate(s) for s in blob["specs"]])
    model.load_state_dict(blob["model"])
    return model.eval(), list(blob["targets"])
