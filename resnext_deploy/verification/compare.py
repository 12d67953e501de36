"""Baselines across time: compare a run with an earlier ``sweep.json`` or ``report.json`` (``--compare-to``).

An earlier run is reduced to one *record* per (model, precision, backend): target top-1, target
p50 per batch size, and what makes two runs comparable (the evaluation subset, the CPU). The
regression gates (``max_top1_regression``, ``max_latency_growth`` in ``gates.py``) read it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from resnext_deploy.errors import InputError
from resnext_deploy.report import SCHEMA as REPORT_SCHEMA
from resnext_deploy.report import Report, parse_report

EVAL_IDENTITY = ("kind", "layout", "split", "available", "requested", "seed", "count")
SWEEP_SCHEMA = "resnext-deploy/sweep"


def comparison_record(report: Report) -> dict[str, Any] | None:
    """What a later run compares with, from a verified report.json; None when it was never verified."""
    ver = report.verification
    if ver is None or report.model is None:
        return None
    per_batch = (ver.latency or {}).get("per_batch") or {}
    return {
        "model": report.model.name,
        "precision": report.precision,
        "backend": ver.backend,
        "target_top1": ver.accuracy.get("target_top1"),
        "p50_ms": {batch: row["target"]["p50_ms"] for batch, row in per_batch.items() if "target" in row},
        "eval": {key: ver.eval_data.get(key) for key in EVAL_IDENTITY},
        "cpu": ver.environment.get("cpu"),
    }


@dataclass(frozen=True)
class Comparison:
    """One earlier record resolved against the current run: the values to compare and why a gate cannot."""

    source: str
    top1: float | None = None
    p50_ms: dict[str, float] | None = None
    top1_skip: str | None = None
    latency_skip: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "top1": self.top1, "p50_ms": self.p50_ms,
                "top1_skip": self.top1_skip, "latency_skip": self.latency_skip}


@dataclass(frozen=True)
class EarlierRun:
    """The records of an earlier sweep.json (one per cell) or report.json (one)."""

    path: Path
    records: list[dict[str, Any]]

    def against(self, model: str, precision: str, backend: str, eval_source: dict[str, Any], cpu: str | None) -> Comparison:
        """The record of (model, precision, backend), checked for comparability with the current run."""
        cell = f"{model}/{precision}-{backend}"
        found = [r for r in self.records if (r["model"], r["precision"], r.get("backend")) == (model, precision, backend)]
        if not found:
            reason = f"{self.path} holds no {cell}"
            return Comparison(str(self.path), top1_skip=reason, latency_skip=reason)
        record = found[0]
        source = f"{self.path} [{cell}]"
        current = {key: eval_source.get(key) for key in EVAL_IDENTITY}
        top1_skip = None
        if record["eval"] != current:
            differing = ", ".join(f"{k} {record['eval'].get(k)} vs {current[k]}" for k in EVAL_IDENTITY if record["eval"].get(k) != current[k])
            top1_skip = f"{source} evaluated other images ({differing})"
        elif record["target_top1"] is None:
            top1_skip = f"{source} measured no top-1"
        latency_skip = None
        if record.get("cpu") != cpu:
            latency_skip = f"{source} was timed on another CPU ({record.get('cpu')} vs {cpu})"
        return Comparison(source, record["target_top1"], dict(record.get("p50_ms") or {}), top1_skip, latency_skip)


def load_earlier_run(path: Path) -> EarlierRun:
    """Read ``--compare-to``: a sweep.json (every cell) or a verified report.json (one record)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"--compare-to {path} does not exist", hint="pass an earlier sweep.json or report.json") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"--compare-to {path} is not readable JSON: {exc}", hint="pass an earlier sweep.json or report.json") from None
    schema = data.get("schema") if isinstance(data, dict) else None
    if schema == SWEEP_SCHEMA:
        records = [cell["compare"] for cell in data.get("cells", []) if cell.get("compare")]
    elif schema == REPORT_SCHEMA:
        record = comparison_record(parse_report(data, f"--compare-to {path}"))
        if record is None:
            raise InputError(f"--compare-to {path} was never verified", hint="run `resnext-deploy verify` on that export first")
        records = [record]
    else:
        raise InputError(f"--compare-to {path} is neither a sweep.json nor a report.json (schema {schema!r})",
                         hint="pass the sweep.json of an earlier sweep or the report.json of an earlier export")
    return EarlierRun(path, records)
