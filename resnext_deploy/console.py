"""Terminal output: results on stdout, progress and messages on stderr (rich)."""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

# Pipes and CI logs get a wide console so tables are never cut to 80 columns.
out = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 140)
err = Console(stderr=True, highlight=False)


@contextlib.contextmanager
def stage(title: str) -> Iterator[None]:
    """Show a spinner while a stage runs, then one line with its duration."""
    start = time.perf_counter()
    with err.status(f"{title} ...", spinner="dots"):
        yield
    err.print(f"[green]✓[/] {title} [dim]({time.perf_counter() - start:.1f}s)[/]")


def progress_bar(enabled: bool = True) -> Progress:
    """A transient bar on stderr for long work; hidden when disabled or when stderr is not a terminal.

    It draws on a console of its own, so a bar may run inside a ``stage`` spinner.
    """
    console = Console(stderr=True)
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn(),
        console=console, transient=True, disable=not (enabled and console.is_terminal),
    )


def warn(message: str) -> None:
    err.print(f"[bold yellow]warning:[/] {escape(message)}")
