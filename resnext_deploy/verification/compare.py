"""Baselines across time: compare a run with an earlier ``sweep.json`` or ``report.json`` (``--compare-to``).

An earlier run is reduced to one *record* per (model, precision, backend): target top-1, target
p50 per batch size, and what makes two runs comparable (the evaluation subset, the CPU). The
regression gates (``max_top1_regression``, ``max_latency_growth`` in ``gates.py``) read it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, StrictStr

from resnext_deploy.errors import InputError, check_record, shorten
from resnext_deploy.files import read_json
from resnext_deploy.report import SCHEMA as REPORT_SCHEMA
from resnext_deploy.report import Report, parse_report

EVAL_IDENTITY = ("kind", "layout", "split", "available", "requested", "seed", "count")
SWEEP_SCHEMA = "resnext-deploy/sweep"
MAX_EARLIER_BYTES = 256 * 1024 * 1024  # a sweep.json of thousands of cells
HINT = "pass an earlier sweep.json or report.json written by resnext-deploy"
Text = Annotated[StrictStr, Field(max_length=1024)]
Number = StrictFloat | StrictInt
Scalar = Text | Number | None


class CompareRecord(BaseModel):
    """One earlier (model, precision, backend) record, typed before any gate reads it."""

    model_config = ConfigDict(extra="allow", strict=True)

    model: Text
    precision: Text
    backend: Text | None = None
    target_top1: Number | None = None
    p50_ms: Annotated[dict[Text, Number], Field(max_length=1024)] = {}
    eval: dict[Text, Scalar]
    cpu: Text | None = None


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
    """Read ``--compare-to``: a sweep.json (every cell) or a verified report.json (one record).

    Every record is typed (pydantic) here, before any evaluation, so a file with missing keys, wrong types
    or nesting too deep to parse is exit 2 up front rather than a crash after the whole run.
    """
    path = Path(path)
    where = f"--compare-to {path}"
    try:
        data = read_json(path, where, HINT, MAX_EARLIER_BYTES)
    except FileNotFoundError:
        raise InputError(f"{where} does not exist", hint=HINT) from None
    except OSError as exc:
        raise InputError(f"{where} is not readable ({exc.strerror or exc})", hint=HINT) from None
    schema = data.get("schema") if isinstance(data, dict) else None
    try:
        if schema == SWEEP_SCHEMA:
            raw = [cell["compare"] for cell in data.get("cells", []) if cell.get("compare")]
        elif schema == REPORT_SCHEMA:
            record = comparison_record(parse_report(data, where))
            if record is None:
                raise InputError(f"{where} was never verified", hint="run `resnext-deploy verify` on that export first")
            raw = [record]
        else:
            raise InputError(f"{where} is neither a sweep.json nor a report.json (schema {shorten(repr(schema), 80)})",
                             hint="pass the sweep.json of an earlier sweep or the report.json of an earlier export")
    except (KeyError, TypeError, AttributeError) as exc:
        raise InputError(f"{where} is malformed ({type(exc).__name__}: {shorten(exc, 120)})", hint=HINT) from None
    records = [check_record(CompareRecord, record, where, HINT).model_dump() for record in raw]
    return EarlierRun(path, records)
