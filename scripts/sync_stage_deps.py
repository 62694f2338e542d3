"""Rewrite the slimnet code deps of every dvc.yaml stage to its import closure (what
tests/test_stage_deps.py checks). Run after adding or moving imports:

    python scripts/sync_stage_deps.py

Only the `- slimnet/...` lines of each stage's deps change; comments and other deps stay.
A sub-package is listed as its folder when the stage runs every Python file in it.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from test_stage_deps import command_closure, python_files  # noqa: E402


def packages() -> list[Path]:
    """slimnet's sub-packages, outer before inner."""
    found = [p.parent for p in (REPO / "slimnet").rglob("__init__.py") if p.parent != REPO / "slimnet"]
    return sorted(found, key=lambda p: (len(p.parts), p.as_posix()))


def listed(files: set[str]) -> list[str]:
    """The stage's files, with each sub-package whose every Python file is among them listed as a folder."""
    entries = set(files)
    collapsed: list[Path] = []
    for folder in packages():
        if any(outer in folder.parents for outer in collapsed):
            continue
        inside = python_files(folder)
        if inside and inside <= files:
            entries = (entries - inside) | {folder.relative_to(REPO).as_posix()}
            collapsed.append(folder)
    return sorted(entries)


def main() -> None:
    text = (REPO / "dvc.yaml").read_text().splitlines(keepends=True)
    out, command, i = [], None, 0
    while i < len(text):
        line = text[i]
        if m := re.match(r"^\s+cmd: python -m slimnet (\w+)", line):
            command = m.group(1)
        if re.match(r"^\s+- slimnet/", line):
            indent = line[: line.index("-")]
            while i < len(text) and re.match(r"^\s+- slimnet/", text[i]):
                i += 1
            out.extend(f"{indent}- {dep}\n" for dep in listed(command_closure(command)))
            continue
        out.append(line)
        i += 1
    (REPO / "dvc.yaml").write_text("".join(out))
    print("dvc.yaml: slimnet deps synced to each stage's import closure")


if __name__ == "__main__":
    main()
