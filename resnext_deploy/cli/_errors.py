"""The one place where known errors become a message on stderr and an exit code."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import typer
from rich.markup import escape

from resnext_deploy.console import err
from resnext_deploy.errors import DeployError

F = TypeVar("F", bound=Callable[..., Any])


def handles_errors(command: F) -> F:
    """Turn a :class:`DeployError` into ``error: ...`` / ``hint: ...`` and its exit code; bugs keep tracebacks."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except DeployError as exc:
            err.print(f"[bold red]error:[/] {escape(exc.message)}")
            if exc.hint:
                err.print(f"[bold]hint:[/] {escape(exc.hint)}")
            raise typer.Exit(exc.exit_code) from None

    return wrapper  # type: ignore[return-value]
