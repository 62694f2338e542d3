"""Progress: a rich bar on a terminal, one plain line per epoch otherwise (DVC queue logs), and the
epochs' curves to a sink when a stage gives one (training/live.py: dvclive's files)."""

from __future__ import annotations

import sys
from contextlib import contextmanager
from typing import Iterable, Iterator, Protocol

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

console = Console(stderr=True)


class CurvesSink(Protocol):
    def log(self, rows: Iterable[dict], headline: Iterable[str], run: str) -> None: ...


class Reporter:
    def __init__(self, progress: Progress | None, curves: CurvesSink | None = None):
        self._progress = progress
        self._task = None
        self._curves = curves

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

    def epochs(self, rows: list[dict], headline: Iterable[str], run: str) -> None:
        """Finished epochs' curve rows (a resumed run's restored ones first), for the sink."""
        if self._curves is not None and rows:
            self._curves.log(rows, headline, run)


class Silent(Reporter):
    """Reports nothing: data-parallel ranks other than 0 (rank 0 speaks for all)."""

    def __init__(self) -> None:
        super().__init__(None)

    def line(self, text: str) -> None:
        pass


@contextmanager
def reporter(enabled: bool | None = None, silent: bool = False, curves: CurvesSink | None = None) -> Iterator[Reporter]:
    """A bar when stderr is a terminal (or ``enabled``), plain lines otherwise; nothing if ``silent``
    (then the curves are not written either: rank 0 writes them)."""
    if silent:
        yield Silent()
        return
    interactive = console.is_terminal if enabled is None else enabled
    if not interactive:
        yield Reporter(None, curves)
        return
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        yield Reporter(progress, curves)
