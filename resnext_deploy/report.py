"""report.json: one versioned record per export directory, extended by each stage."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

from resnext_deploy import environment
from resnext_deploy.errors import InputError
from resnext_deploy.files import write_json

SCHEMA = "resnext-deploy/report"
SCHEMA_VERSION = 1
REPORT_NAME = "report.json"
RANDOM_WEIGHTS_WARNING = "RANDOM WEIGHTS: this model was not trained; its accuracy numbers mean nothing"


def new_report(command: list[str], environment_record: dict[str, Any]) -> dict[str, Any]:
    """An empty report with the header every stage relies on; ``environment_record`` is ``machine.describe()``."""
    return {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "toolchain_version": environment.toolchain_version(),
        "command": command,
        "warnings": [],
        "artifacts": {},
        "environment": environment_record,
    }


def add_warning(report: dict[str, Any], message: str) -> None:
    if message not in report["warnings"]:
        report["warnings"].append(message)


def write_report(directory: Path, report: dict[str, Any]) -> Path:
    """Atomically write ``directory/report.json``."""
    path = directory / REPORT_NAME
    write_json(path, report)
    return path


def read_report(directory: Path) -> dict[str, Any]:
    """Read and check an export directory's report.json."""
    path = directory / REPORT_NAME
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{directory} has no {REPORT_NAME}", hint="point at a directory written by `resnext-deploy export`") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path} is not valid JSON: {exc}", hint="re-run `resnext-deploy export` for this directory") from None
    if report.get("schema") != SCHEMA or report.get("schema_version") != SCHEMA_VERSION:
        raise InputError(
            f"{path} has schema {report.get('schema')!r} version {report.get('schema_version')!r}, "
            f"expected {SCHEMA!r} version {SCHEMA_VERSION}",
            hint="re-export with this version of resnext-deploy",
        )
    return report
