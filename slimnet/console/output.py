"""What a command shows the user: the console it prints to, a stage's one-line summary, and one
line (exit code 2) instead of a traceback for a SlimnetError. Shared by the stage commands
(cli.py, pipeline/) and the arch tools (pipeline/arch_tools.py), so none imports another for it."""

from __future__ import annotations

import functools
import json
import sys
from typing import Callable

import typer
from rich.console import Console

from slimnet.console.errors import SlimnetError, leave_for_launcher

out = Console()


def print_summary(title: str, summary: dict) -> None:
    """A stage's summary on one line: its title in bold, then the summary as JSON."""
    out.print(f"[bold]{title}[/bold] " + json.dumps(summary, default=str))


def user_errors(command: Callable) -> Callable:
    """One clear line and exit code 2 for SlimnetError, instead of a traceback."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except SlimnetError as error:
            if not leave_for_launcher(str(error)):  # a launched rank: the launcher prints it once
                print(f"error: {error}", file=sys.stderr)
            raise typer.Exit(2) from None

    return wrapper
