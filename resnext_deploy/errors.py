"""One error hierarchy for the whole toolchain, and the exit codes the CLI gives.

User-facing errors carry a hint and an exit code; the CLI maps them to a message on
stderr and that code in one place (``resnext_deploy/cli/_errors.py``). Failures caused by the
user or the machine (a full disk, a file that is not UTF-8) are translated into this hierarchy
by :func:`from_exception`; anything else is an internal error (exit 3).
"""

from __future__ import annotations

import errno
import os
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from pydantic import BaseModel

EXIT_OK = 0
EXIT_GATE_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_INTERNAL = 3  # a bug: one-line summary, traceback with -v/--debug
EXIT_SIGINT = 130  # 128 + SIGINT, as shells report it
EXIT_SIGTERM = 143  # 128 + SIGTERM (what CI timeouts send first)
MAX_QUOTED = 200  # characters of a hostile value an error message quotes
MAX_MESSAGE = 4000  # characters of a message or hint the CLI prints


class DeployError(Exception):
    """Base class of every error the toolchain raises on purpose."""

    exit_code: int = EXIT_BAD_INPUT

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\nhint: {self.hint}"


class UsageError(DeployError):
    """Bad arguments: unknown model, bad option values, conflicting flags."""


class InputError(DeployError):
    """Bad input files or folders: missing, unreadable, corrupt, wrong layout."""


class WeightsError(DeployError):
    """Weights that cannot be loaded or do not fit the architecture."""


class OutputError(DeployError):
    """An output that cannot be written or would be overwritten without --force."""


class NotAvailableError(DeployError):
    """A feature or backend that this machine or this release cannot provide."""


class ParityError(DeployError):
    """An exported graph whose outputs do not match its source model."""


class CellError(DeployError):
    """Sweep cells that could not run (their errors are in sweep.json); the other cells' results are kept."""


class GateFailed(DeployError):
    """A verification gate failed: the artifact works but is not good enough."""

    exit_code = EXIT_GATE_FAILED


class Interrupted(BaseException):
    """SIGINT or SIGTERM arrived: unwind (cleaning up) and exit 128 + the signal number.

    A ``BaseException`` like ``KeyboardInterrupt``, so ``except Exception`` blocks do not swallow it.
    """

    def __init__(self, signum: int) -> None:
        import signal

        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


_OS_HINTS = {
    errno.ENOSPC: "free some space on that file system, or write somewhere else (--output)",
    errno.EDQUOT: "free some space (disk quota exceeded), or write somewhere else (--output)",
    errno.EFBIG: "the file system or a ulimit refuses files this large; write somewhere else",
    errno.EACCES: "check the permissions, or choose another path",
    errno.EPERM: "check the permissions, or choose another path",
    errno.EROFS: "that file system is read-only; choose another path",
    errno.EISDIR: "pass a file name, not a folder",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.ENOENT: "check the path",
    errno.ENAMETOOLONG: "use a shorter path",
    errno.EMFILE: "raise the open-files limit (ulimit -n)",
    errno.EIO: "the device reported an I/O error; check the disk, or write somewhere else",
}
_MACHINE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EIO)


def from_exception(exc: BaseException) -> DeployError | None:
    """The user-facing error for a failure caused by the user or the machine, or None for a bug.

    ``OSError`` with an errno (full disk, permissions, a folder where a file was expected...) and
    ``UnicodeDecodeError`` (a user file that is not UTF-8 text) become exit-2 errors naming the
    path; ``MemoryError`` says how to need less memory.
    """
    if isinstance(exc, DeployError):
        return exc
    if isinstance(exc, UnicodeDecodeError):
        return InputError(f"a file is not UTF-8 text ({exc.reason} at byte {exc.start})",
                          hint="save the file as UTF-8 (for example with iconv -t UTF-8)")
    if isinstance(exc, MemoryError):
        return OutputError("out of memory", hint="use a smaller batch or subset (--calib-size, --eval-size), or a larger machine")
    if isinstance(exc, OSError) and exc.errno:
        where = exc.filename if exc.filename is not None else None
        what = os.strerror(exc.errno)
        message = f"{what}: {where}" if where is not None else f"{what} ({exc})" if str(exc) and what not in str(exc) else what
        kind = OutputError if exc.errno in _MACHINE_ERRNOS else InputError
        return kind(message, hint=_OS_HINTS.get(exc.errno, "check the path and the machine's state, then run again"))
    return None


def shorten(text: object, limit: int = MAX_QUOTED) -> str:
    """``text`` cut to ``limit`` characters, saying how long it was: what an error quotes stays readable."""
    text = str(text)
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text):,} characters in all)"


Record = TypeVar("Record", bound="BaseModel")


def describe_validation(exc: Any, limit: int = 4) -> str:
    """A pydantic ``ValidationError`` as one line: each field, what is wrong and (shortened) what was given."""
    problems = []
    for error in exc.errors()[:limit]:
        where = ".".join(str(part) for part in error["loc"]) or "(top level)"
        given = "" if error["type"] == "missing" else f" (got {shorten(repr(error.get('input')), 80)})"
        problems.append(f"{where}: {error['msg']}{given}")
    more = f"; and {len(exc.errors()) - limit} more" if len(exc.errors()) > limit else ""
    return "; ".join(problems) + more


def check_record(model: type[Record], data: Any, where: str, hint: str | None) -> Record:
    """``data`` validated by the pydantic ``model``; ``InputError`` naming each bad field otherwise."""
    from pydantic import ValidationError

    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise InputError(f"{where} is malformed: {describe_validation(exc)}", hint=hint) from None
