"""Terminal output: results on stdout, progress and messages on stderr (rich)."""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator

from rich.console import Console
from rich.markup import escape

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


def warn(message: str) -> None:
    err.print(f"[bold yellow]warning:[/] {escape(message)}")
