"""The one place where failures become a message on stderr and an exit code.

0 ok, 1 a gate failed, 2 bad input or a machine problem (full disk, permissions), 3 an internal
error (a bug: one line, the traceback with ``-v``), 130/143 interrupted by SIGINT/SIGTERM.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import click
import typer
from rich.markup import escape

from resnext_deploy import console
from resnext_deploy.errors import (
    EXIT_INTERNAL,
    EXIT_SIGINT,
    MAX_MESSAGE,
    DeployError,
    Interrupted,
    from_exception,
    shorten,
)
from resnext_deploy.signals import interruptible, received

F = TypeVar("F", bound=Callable[..., Any])
_CLICK_FLOW = (click.exceptions.Exit, click.exceptions.Abort, click.exceptions.ClickException)


def _print_error(exc: DeployError) -> None:
    """The message and hint, each cut to ``MAX_MESSAGE`` characters: a hostile value quoted whole is no message."""
    console.err.print(f"[bold red]error:[/] {escape(shorten(exc.message, MAX_MESSAGE))}")
    if exc.hint:
        console.err.print(f"[bold]hint:[/] {escape(shorten(exc.hint, MAX_MESSAGE))}")


def _internal_error(exc: BaseException) -> int:
    summary = shorten(f"{type(exc).__name__}: {exc}".strip().splitlines()[0], MAX_MESSAGE) if str(exc).strip() else type(exc).__name__
    console.err.print(f"[bold red]internal error:[/] {escape(summary)}")
    if console.show_tracebacks():
        console.err.print_exception(show_locals=False)
    else:
        console.err.print("[bold]hint:[/] this is a bug in resnext-deploy; run with -v for the traceback and report it")
    return EXIT_INTERNAL


def handles_errors(command: F) -> F:
    """Run ``command`` with SIGTERM handled like SIGINT, mapping every failure to a message and an exit code."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            with interruptible():
                return command(*args, **kwargs)
        except _CLICK_FLOW:
            raise
        except Interrupted as exc:
            console.err.print(f"[bold yellow]interrupted[/] ({exc}): stopped; partial work was removed")
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            console.err.print("[bold yellow]interrupted[/] (SIGINT): stopped; partial work was removed")
            raise typer.Exit(EXIT_SIGINT) from None
        except Exception as exc:  # noqa: BLE001 - the one place that classifies every failure
            signum = received()
            if signum is not None:  # a library turned our Interrupted into its own error: still an interruption
                interrupted = Interrupted(signum)
                console.err.print(f"[bold yellow]interrupted[/] ({interrupted}): stopped; partial work was removed")
                raise typer.Exit(interrupted.exit_code) from None
            known = from_exception(exc)
            if known is None:
                raise typer.Exit(_internal_error(exc)) from None
            _print_error(known)
            raise typer.Exit(known.exit_code) from None

    return wrapper  # type: ignore[return-value]
