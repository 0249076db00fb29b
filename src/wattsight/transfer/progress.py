"""The progress bar of export and import: on standard error, only on a terminal and without --quiet."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


def bar(quiet: bool) -> Progress:
    """A rich Progress with a samples count and a free ``where`` field (series, time reached)."""
    console = Console(stderr=True)
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(),
        TextColumn("{task.completed:,.0f} samples"), TextColumn("{task.fields[where]}"),
        TimeElapsedColumn(), TimeRemainingColumn(),
        console=console, transient=False, disable=quiet or not console.is_terminal)
