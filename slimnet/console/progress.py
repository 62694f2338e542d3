"""Progress: a rich bar on a terminal, one plain line per epoch otherwise (DVC queue logs)."""

from __future__ import annotations

import sys
from contextlib import contextmanager
from typing import Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

console = Console(stderr=True)


class Reporter:
    def __init__(self, progress: Progress | None):
        self._progress = progress
        self._task = None

    def start(self, description: str, total: int) -> None:
        if self._progress is not None:
            if self._task is not None:
                self._progress.remove_task(self._task)
            self._task = self._progress.add_task(description, total=total)

    def advance(self, steps: int = 1) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.advance(self._task, steps)

    def line(self, text: str) -> None:
        if self._progress is not None:
            self._progress.console.print(text)
        else:
            print(text, file=sys.stderr, flush=True)


class Silent(Reporter):
    """Reports nothing: data-parallel ranks other than 0 (rank 0 speaks for all)."""

    def __init__(self) -> None:
        super().__init__(None)

    def line(self, text: str) -> None:
        pass


@contextmanager
def reporter(enabled: bool | None = None, silent: bool = False) -> Iterator[Reporter]:
    """A bar when stderr is a terminal (or ``enabled``), plain lines otherwise; nothing if ``silent``."""
    if silent:
        yield Silent()
        return
    interactive = console.is_terminal if enabled is None else enabled
    if not interactive:
        yield Reporter(None)
        return
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        yield Reporter(progress)
