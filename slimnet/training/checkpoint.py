"""Resumable training: one checkpoint per run, keyed by what the run depends on."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import torch

from slimnet import atomic


def fingerprint(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


class Checkpoints:
    """``save`` after every epoch, ``load`` on start, ``clear`` once the final outputs exist.

    A checkpoint written for other settings (a different fingerprint) is never resumed.
    """

    def __init__(self, directory: Path, key: str):
        self.path = Path(directory) / f"{key}.pt"

    def load(self) -> dict | None:
        if not self.path.is_file():
            return None
        try:
            return torch.load(self.path, map_location="cpu", weights_only=False)
        except Exception as error:  # noqa: BLE001 -- torch.load fails in many ways on a bad file
            # Not fatal (the run restarts), but never silent: the user loses the epochs it held.
            reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            print(
                f"warning: checkpoint {self.path} is unreadable ({reason}); discarded, training restarts from epoch 0",
                file=sys.stderr,
            )
            self.clear()
            return None

    def save(self, state: dict) -> None:
        atomic.save_torch(self.path, state)

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)


def file_sha256(path: Path) -> str:
    """A file's SHA-256, read in 1 MiB blocks (a checkpoint key's input, e.g. the supernet file)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def rng_state() -> dict:
    """Global RNG state (dropout draws from it), so a resumed run continues the same stream."""
    state = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict) -> None:
    torch.set_rng_state(state["cpu"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
