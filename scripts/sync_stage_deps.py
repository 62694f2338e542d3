"""Rewrite the slimnet code deps of every dvc.yaml stage to its import closure (what
tests/test_stage_deps.py checks). Run after adding or moving imports:

    python scripts/sync_stage_deps.py

Only the `- slimnet/...` lines of each stage's deps change; comments and other deps stay.
A bottom layer the stage touches, or a sub-package whose every file it runs, is listed as its
folder (tests/test_stage_deps.py: short_deps).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from test_stage_deps import command_closure, short_deps  # noqa: E402


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
            out.extend(f"{indent}- {dep}\n" for dep in short_deps(command_closure(command)))
            continue
        out.append(line)
        i += 1
    (REPO / "dvc.yaml").write_text("".join(out))
    print("dvc.yaml: slimnet deps synced to each stage's import closure")


if __name__ == "__main__":
    main()
