"""One error hierarchy for the whole toolchain.

User-facing errors carry a hint and an exit code; the CLI maps them to a message on
stderr and that code in one place. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_GATE_FAILED = 1
EXIT_BAD_INPUT = 2


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
