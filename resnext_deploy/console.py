"""Terminal output: results on stdout, progress and messages on stderr (rich)."""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from collections.abc import Iterator

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

# Pipes and CI logs get a wide console so tables are never cut to 80 columns.
out = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 140)
err = Console(stderr=True, highlight=False)

_verbosity = 0  # -1 quiet, 0 normal, 1 verbose (-v), 2 debug (--debug or -vv)


def configure(verbosity: int = 0) -> None:
    """Set how much the CLI says: logging level of our loggers, tracebacks of internal errors.

    -1 (``-q``): warnings and errors only; 0: our info messages; 1 (``-v``): also debug logs and
    tracebacks of internal errors; 2 (``--debug``): also the libraries' debug logs.
    """
    global _verbosity
    _verbosity = verbosity
    from rich.logging import RichHandler

    handler = RichHandler(console=err, show_time=False, show_path=verbosity >= 2, markup=False, rich_tracebacks=True)
    level = {-1: logging.WARNING, 0: logging.INFO}.get(verbosity, logging.DEBUG)
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, RichHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbosity >= 2 else logging.WARNING)
    logging.getLogger("resnext_deploy").setLevel(level)


def verbosity() -> int:
    """The level set by :func:`configure` (0 when the CLI did not configure it)."""
    return _verbosity


def show_tracebacks() -> bool:
    """Whether internal errors print their traceback (``-v`` or ``--debug``)."""
    return _verbosity >= 1


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
