"""What this machine can do: the one record `doctor` prints and report.json stores as ``environment``.

The ground (``environment``) knows Python, the CPU and its features, cores and package versions;
the engines room (``engines.probe``) knows which engines are installed and usable, what ``auto``
picks and the GPUs. This module, above both, joins them, so `doctor` and every report say the same.
"""

from __future__ import annotations

from typing import Any

from resnext_deploy import environment
from resnext_deploy.engines.probe import engine_packages, engines_record
from resnext_deploy.engines.registry import get_spec
from resnext_deploy.errors import NotAvailableError


def describe() -> dict[str, Any]:
    """The environment record: machine facts, package versions (the engines' included), engines, auto, GPUs."""
    return {**environment.describe(engine_packages()), **engines_record()}


def require_engine(facts: dict[str, Any], name: str) -> None:
    """``NotAvailableError`` (exit 2) with the install hint when engine ``name`` is not usable here."""
    status = next((e for e in facts["engines"] if e["name"] == name), None)
    if status is None:
        get_spec(name)  # UsageError listing the choices
        return
    if not status["usable"]:
        raise NotAvailableError(f"{status['title']} is not usable here: {status['why']}", hint=status["hint"])
