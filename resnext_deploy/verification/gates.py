"""CI gates: thresholds from flags or a TOML file, checked against measured metrics.

A gate whose metric was not measured is *skipped* with the reason, never passed silently.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomllib

from resnext_deploy.errors import InputError, UsageError

# name -> (direction, metric, description); "max": measured must be <= threshold, "min": >=.
GATE_KINDS: dict[str, tuple[str, str, str]] = {
    "max_top1_drop": ("max", "top1_drop_pp", "top-1 drop vs baseline, percentage points"),
    "min_agreement": ("min", "top1_agreement", "top-1 agreement with baseline, fraction"),
    "min_cosine": ("min", "mean_cosine", "mean logits cosine vs baseline"),
    "min_sqnr_db": ("min", "sqnr_db", "SQNR of target logits vs baseline, dB"),
    "min_speedup": ("min", "speedup", "p50 speedup of target over baseline, per batch size"),
    "max_p99_ms": ("max", "p99_ms", "target p99 latency in ms, per batch size"),
    "max_top1_regression": ("max", "top1_regression_pp", "top-1 lost since the --compare-to run, percentage points"),
    "max_latency_growth": ("max", "latency_growth", "target p50 growth since the --compare-to run, fraction, per batch size"),
}
# Mixed-precision targets (export --target-*): gates measured by the fallback search on the tuning images.
# name -> (direction, key of report.json mixed_precision.chosen)
TARGET_GATES: dict[str, tuple[str, str]] = {
    "target_cosine": ("min", "cosine"),
    "target_agreement": ("min", "agreement"),
    "target_top1_drop": ("max", "top1_drop_pp"),
}
DEFAULT_THRESHOLDS: dict[str, float] = {"max_top1_drop": 0.5}
# Applied only with --compare-to. The same images give the same top-1 for the same artifact, so 0.5 pp
# (the max_top1_drop default) is a real change; CPU latency drifts 10-20% run to run on shared runners.
DEFAULT_COMPARE_THRESHOLDS: dict[str, float] = {"max_top1_regression": 0.5, "max_latency_growth": 0.25}


@dataclass(frozen=True)
class GateThresholds:
    """Thresholds given explicitly (flags or code); None leaves a gate to the gates file or the default.

    Field names are the gate names of the TOML file and of report.json, and the flags spelled with dashes.
    """

    max_top1_drop: float | None = None
    min_agreement: float | None = None
    min_cosine: float | None = None
    min_sqnr_db: float | None = None
    min_speedup: float | None = None
    max_p99_ms: float | None = None
    max_top1_regression: float | None = None
    max_latency_growth: float | None = None

    def given(self) -> dict[str, float]:
        """The thresholds that were set."""
        return {name: value for name, value in vars(self).items() if value is not None}


@dataclass(frozen=True)
class GateResult:
    """One checked gate: threshold, measured value, margin (positive = room left) and the verdict."""

    name: str
    metric: str
    threshold: float
    measured: float | None
    margin: float | None
    status: str  # "passed" | "failed" | "skipped"
    reason: str = ""

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    @property
    def failed(self) -> bool:
        return self.status == "failed"

    def describe(self) -> str:
        """``min_agreement: 0.9712 < 0.98 (short by 0.0088)`` style line."""
        if self.status == "skipped" or self.measured is None:
            return f"{self.name}: {self.status} ({self.reason})"
        direction = GATE_KINDS[_kind(self.name)][0] if _kind(self.name) in GATE_KINDS else TARGET_GATES[self.name][0]
        op = "<=" if direction == "max" else ">="
        if self.failed:
            return f"{self.name}: {self.measured:.4g} does not satisfy {op} {self.threshold:g} (off by {abs(self.margin or 0):.4g})"
        return f"{self.name}: {self.measured:.4g} {op} {self.threshold:g} (margin {self.margin:.4g})"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "metric": self.metric, "threshold": self.threshold, "measured": self.measured,
            "margin": self.margin, "passed": self.passed, "status": self.status, "reason": self.reason,
        }


def _kind(name: str) -> str:
    return name.split("@", 1)[0]


@dataclass(frozen=True)
class Gates:
    """Resolved thresholds (gate kind -> value) and where each came from."""

    thresholds: dict[str, float]
    sources: dict[str, str]

    def to_dict(self) -> dict[str, Any]:
        return {"thresholds": dict(self.thresholds), "sources": dict(self.sources)}


def _check_table(table: Any, where: str) -> dict[str, float]:
    if not isinstance(table, Mapping):
        raise UsageError(f"gates file: [{where}] must be a table of thresholds")
    values: dict[str, float] = {}
    for key, value in table.items():
        if isinstance(value, Mapping):
            continue
        if key not in GATE_KINDS:
            raise UsageError(f"gates file: unknown gate {key!r} in [{where}]", hint=f"known gates: {', '.join(GATE_KINDS)}")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UsageError(f"gates file: {where}.{key} must be a number, got {value!r}")
        values[key] = float(value)
    return values


def read_gates_file(path: Path, model: str, precision: str) -> tuple[dict[str, float], dict[str, str]]:
    """Thresholds for (model, precision) from a TOML file: ``[defaults]``, ``[models.M]``, ``[models.M.P]``."""
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"gates file {path} does not exist", hint="pass a TOML file with a [defaults] table") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read gates file {path}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"gates file {path} is not valid TOML: {exc}", hint="see the TOML example in `resnext-deploy verify --help`") from None
    unknown = sorted(set(data) - {"defaults", "models"})
    if unknown:
        raise UsageError(f"gates file {path}: unknown table(s) {', '.join(unknown)}", hint="use [defaults] and [models.NAME.PRECISION]")
    values: dict[str, float] = {}
    sources: dict[str, str] = {}
    layers = [("defaults", data.get("defaults", {}))]
    models = data.get("models", {})
    if not isinstance(models, Mapping):
        raise UsageError(f"gates file {path}: [models] must be a table")
    for name, table in models.items():
        _check_table(table, f"models.{name}")
        for sub, subtable in (table.items() if isinstance(table, Mapping) else ()):
            if isinstance(subtable, Mapping):
                _check_table(subtable, f"models.{name}.{sub}")
    model_table = models.get(model, {})
    layers.append((f"models.{model}", model_table))
    if isinstance(model_table, Mapping) and isinstance(model_table.get(precision), Mapping):
        layers.append((f"models.{model}.{precision}", model_table[precision]))
    for where, table in layers:
        for key, value in _check_table(table, where).items():
            values[key] = value
            sources[key] = f"{Path(path).name} [{where}]"
    return values, sources


def load_gates(
    model: str, precision: str, flags: GateThresholds | Mapping[str, float | None] | None = None,
    gates_file: Path | None = None, comparing: bool = False,
) -> Gates:
    """Resolve thresholds: built-in defaults < gates file (defaults < model < model.precision) < explicit flags.

    ``comparing`` (a ``--compare-to`` run is given) adds the regression gates' defaults.
    """
    thresholds = dict(DEFAULT_THRESHOLDS) | (dict(DEFAULT_COMPARE_THRESHOLDS) if comparing else {})
    sources = {key: "default" for key in thresholds}
    if gates_file is not None:
        values, where = read_gates_file(gates_file, model, precision)
        thresholds.update(values)
        sources.update(where)
    given = flags.given() if isinstance(flags, GateThresholds) else dict(flags or {})
    for key, value in given.items():
        if key not in GATE_KINDS:
            raise UsageError(f"unknown gate {key!r}", hint=f"known gates: {', '.join(GATE_KINDS)}")
        if value is not None:
            thresholds[key] = float(value)
            sources[key] = "flag"
    return Gates(thresholds, sources)


def _check(name: str, threshold: float, measured: float | None, reason: str = "") -> GateResult:
    direction, metric, _ = GATE_KINDS[_kind(name)]
    if measured is None:
        return GateResult(name, metric, threshold, None, None, "skipped", reason or "not measured")
    margin = threshold - measured if direction == "max" else measured - threshold
    return GateResult(name, metric, threshold, measured, margin, "passed" if margin >= 0 else "failed")


def _regression(name: str, threshold: float, measured: float, source: str) -> GateResult:
    result = _check(name, threshold, measured)
    return GateResult(result.name, result.metric, threshold, measured, result.margin, result.status, f"vs {source}")


def _top1_regression(name: str, threshold: float, accuracy: Mapping[str, Any], earlier: Any) -> GateResult:
    if earlier is None:
        return _check(name, threshold, None, "no --compare-to run given")
    if earlier.top1_skip or accuracy.get("target_top1") is None:
        return _check(name, threshold, None, earlier.top1_skip or "top-1 was not measured (no labels)")
    return _regression(name, threshold, earlier.top1 - accuracy["target_top1"], earlier.source)


def _latency_growth(name: str, threshold: float, latency: Mapping[str, Any] | None, earlier: Any) -> list[GateResult]:
    per_batch = (latency or {}).get("per_batch") or {}
    if earlier is None or earlier.latency_skip or not per_batch:
        reason = "no --compare-to run given" if earlier is None else earlier.latency_skip or "latency was not measured"
        return [_check(name, threshold, None, reason)]
    results = []
    for batch, row in per_batch.items():
        gate, before = f"{name}@b{batch}", (earlier.p50_ms or {}).get(batch)
        if "target" not in row or not before:
            results.append(_check(gate, threshold, None, row.get("skipped") or f"{earlier.source} did not time batch {batch}"))
        else:
            results.append(_regression(gate, threshold, row["target"]["p50_ms"] / before - 1.0, earlier.source))
    return results


def evaluate_gates(
    gates: Gates, accuracy: Mapping[str, Any], latency: Mapping[str, Any] | None, earlier: Any = None
) -> list[GateResult]:
    """Check every configured gate against the accuracy and latency sections of the report.

    ``earlier`` (a ``compare.Comparison``) is what the regression gates compare with.
    """
    results: list[GateResult] = []
    for name, threshold in gates.thresholds.items():
        if name == "max_top1_regression":
            results.append(_top1_regression(name, threshold, accuracy, earlier))
        elif name == "max_latency_growth":
            results.extend(_latency_growth(name, threshold, latency, earlier))
        elif name == "max_top1_drop":
            drop = accuracy.get("top1_drop_pp")
            reason = "" if drop is not None else accuracy.get("accuracy_note") or "top-1 was not measured (no labels)"
            results.append(_check(name, threshold, drop, reason))
        elif name == "min_sqnr_db" and accuracy.get("identical_logits"):
            results.append(GateResult(name, GATE_KINDS[name][1], threshold, None, None, "passed",
                                      "logits identical to the baseline (SQNR infinite)"))
        elif name in ("min_agreement", "min_cosine", "min_sqnr_db"):
            metric = GATE_KINDS[name][1]
            results.append(_check(name, threshold, accuracy.get(metric)))
        else:
            per_batch = (latency or {}).get("per_batch") or {}
            if not per_batch:
                results.append(_check(name, threshold, None, "latency was not measured"))
                continue
            for batch, row in per_batch.items():
                gate = f"{name}@b{batch}"
                if row.get("skipped"):
                    results.append(_check(gate, threshold, None, row["skipped"]))
                elif name == "min_speedup":
                    results.append(_check(gate, threshold, row.get("speedup")))
                else:
                    results.append(_check(gate, threshold, row["target"]["p99_ms"]))
    return results


def target_gates(section: Mapping[str, Any] | None) -> list[GateResult]:
    """The mixed-precision targets of an export (report.json ``mixed_precision``) as gates: each target set with
    ``--target-*``, measured on the tuning images by the fallback search, failed when the search ran out of budget."""
    if not isinstance(section, Mapping) or not isinstance(section.get("targets"), Mapping):
        return []
    chosen = section.get("chosen") if isinstance(section.get("chosen"), Mapping) else {}
    missed = set(section.get("failed") or [])
    results = []
    for name, threshold in section["targets"].items():
        if name not in TARGET_GATES or not isinstance(threshold, (int, float)):
            continue
        direction, key = TARGET_GATES[name]
        measured = chosen.get(key)
        margin = None if not isinstance(measured, (int, float)) else (
            threshold - measured if direction == "max" else measured - threshold)
        status = "failed" if name in missed else "passed" if margin is not None else "skipped"
        results.append(GateResult(name, f"{key} (tuning images)", float(threshold), measured, margin, status,
                                  "mixed-precision target, measured on the tuning images during export"))
    return results


def gates_record(gates: Gates, results: list[GateResult], earlier: Any = None) -> dict[str, Any]:
    """The ``gates`` section of report.json: thresholds, their sources, the verdicts and what was compared with."""
    record = {
        **gates.to_dict(),
        "passed": not any(r.failed for r in results),
        "failed": [r.name for r in results if r.failed],
        "skipped": [r.name for r in results if r.status == "skipped"],
        "results": [r.to_dict() for r in results],
    }
    if earlier is not None:
        record["compare_to"] = earlier.to_dict()
    return record
