"""report.json: one versioned record per export directory, defined once as typed models, extended by each stage.

Each stage fills its section (``report.export = ...``); readers use attributes, so renaming a key
is a type error, not a grep. Assignments are validated (a dict becomes its section's model). Each
section names the fields the toolchain reads; what a stage records beyond them (parity details,
timings, per-layer lists) is kept as written (``extra="allow"``) and reachable as attributes too.
``docs/report.schema.json`` is generated from these models (``python -m resnext_deploy.report``)
so CI users can validate reports with standard JSON Schema tools; a test keeps it current.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from resnext_deploy.environment import toolchain_version
from resnext_deploy.errors import InputError
from resnext_deploy.files import write_json
from resnext_deploy.layout import REPORT_NAME

SCHEMA = "resnext-deploy/report"
SCHEMA_VERSION = 2  # 2: the typed models and the published JSON Schema; version 1 reports have the same layout
READABLE_VERSIONS = (1, 2)
RANDOM_WEIGHTS_WARNING = "RANDOM WEIGHTS: this model was not trained; its accuracy numbers mean nothing"
MAX_REPORT_BYTES = 64 * 1024 * 1024  # a report is kilobytes; anything near this was not written by us


class Section(BaseModel):
    """A report section: the fields the toolchain reads, typed; anything else the stage recorded, kept.

    Containers with a default (lists, tables) count as set, so one filled in place is written too.
    """

    model_config = ConfigDict(extra="allow", validate_assignment=True, populate_by_name=True)

    def model_post_init(self, context: Any, /) -> None:
        containers = {name for name, info in type(self).model_fields.items() if info.default_factory in (list, dict)}
        self.model_fields_set.update(containers)


class ModelRecord(Section):
    """The zoo entry exported (``zoo.ModelSpec.to_dict``)."""

    name: str
    num_classes: int | None = None
    preprocess: dict[str, Any] | None = None


class WeightsRecord(Section):
    """Where the weights came from (``exporters.models.WeightsInfo``)."""

    origin: str | None = None
    kind: str | None = None
    sha256: str | None = None
    random: bool = False
    seed: int | None = None  # --weights random: the seed the weights were drawn with


class ExportRecord(Section):
    """The FP32 ONNX export: file, checksum, opset, BatchNorm folding, simplification, parity."""

    path: str | None = None
    sha256: str | None = None
    opset: int | None = None
    size_bytes: int | None = None
    batchnorm: dict[str, Any] | None = None
    simplify: dict[str, Any] | None = None
    parity: dict[str, Any] | None = None
    reused_from: str | None = None


class Artifacts(Section):
    """File names (relative to the export directory) of everything the export wrote."""

    fp32: str | None = None
    reference: str | None = None  # a bare check's FP32 reference (--reference); for an FP32 artifact "fp32" names it
    fp16: str | None = None
    int8: str | None = None
    engine: str | None = None
    engine_manifest: str | None = None
    calibration_manifest: str | None = None
    calibration_stats: str | None = None
    sensitivity: str | None = None
    sensitivity_plot: str | None = None
    recipes: dict[str, str] = Field(default_factory=dict)  # INT8 recipe -> its artifact

    def baseline(self) -> str | None:
        """The FP32 model the artifact is compared with: a bare check's ``reference``, else ``fp32``."""
        return self.reference or self.fp32

    def named(self, key: str) -> str | None:
        """The file recorded under ``key`` (a precision, ``engine``, ...), None when there is none."""
        value = getattr(self, key, None)
        return value if isinstance(value, str) else None


class CalibrationRecord(Section):
    """The calibration subset as used: where, how many, which method, the manifest's sha256, the tuning slice."""

    data: str | None = None
    size: int = 0
    requested_size: int | None = None
    method: str | None = None
    seed: int | None = None
    manifest_sha256: str | None = None
    skipped: int = 0
    tuning: dict[str, Any] | None = None


class QuantizationRecord(Section):
    """The precision artifact: INT8 (recipe, Q/DQ counts, statistics) or FP16 (conversion facts)."""

    path: str | None = None
    recipe: str | None = None
    stats_cache_hit: bool | None = None
    stats_file: str | None = None


class TargetRecord(Section):
    """One INT8 recipe's artifact (``--targets``): the export's own recipe has ``own`` set."""

    artifact: str
    own: bool = False
    quantization: QuantizationRecord


class EngineRecord(Section):
    """The engine built: backend, why it was chosen, its files and build record (paths relative)."""

    backend: str
    reason: str | None = None
    artifact: dict[str, Any] = Field(default_factory=dict)


class HeldOutTarget(Section):
    """One accuracy target of a mixed-precision artifact: the tuning images' number and the held-out one."""

    target: str
    threshold: float
    tuning: float | None = None
    held_out: float | None = None
    held_out_meets_target: bool | None = None


class HeldOutCheck(Section):
    """A mixed-precision artifact's targets on the held-out evaluation images, beside the tuning numbers.

    Informational: the target gate is the export's, on the tuning images; this never changes the exit code.
    """

    targets: list[HeldOutTarget] = Field(default_factory=list)
    held_out_images: int | None = None
    held_out_meets_targets: bool
    missed: list[str] = Field(default_factory=list)


class VerificationRecord(Section):
    """Target vs FP32 baseline: accuracy, latency, the images, both sides, the machine."""

    mixed_precision: HeldOutCheck | None = None
    accuracy: dict[str, Any]
    latency: dict[str, Any] | None = None
    eval_data: dict[str, Any] = Field(default_factory=dict)
    baseline: dict[str, Any] = Field(default_factory=dict)
    target: dict[str, Any] = Field(default_factory=dict)
    backend: str
    threads: int | None = None
    environment: dict[str, Any] = Field(default_factory=dict)
    notes: list[str] = Field(default_factory=list)


class GatesRecord(Section):
    """Thresholds, their sources and the verdicts; ``passed`` is what the exit code says."""

    passed: bool = True
    failed: list[str] = Field(default_factory=list)
    skipped: list[str] = Field(default_factory=list)
    results: list[dict[str, Any]] = Field(default_factory=list)
    required: bool = False


class StagesRecord(Section):
    """Seconds per stage of the last export and verify (None: the stage did not run); where the time went."""

    model: float | None = None  # build the torch model, load weights
    fold: float | None = None  # BatchNorm folding
    export: float | None = None  # torch.onnx.export, checker, shape inference
    simplify: float | None = None
    parity: float | None = None  # ONNX Runtime vs PyTorch
    calibration: float | None = None  # statistics (0 on a cache hit)
    quantize: float | None = None  # Q/DQ artifacts, every --targets recipe
    sensitivity: float | None = None  # the per-layer analysis (about 0 on a cache hit)
    search: float | None = None  # the fallback search and the chosen artifact
    engine_build: float | None = None
    baseline: float | None = None  # FP32 reference logits of the evaluation images (0 on a cache hit)
    target: float | None = None  # the artifact's logits of the evaluation images
    decode: float | None = None  # decoding evaluation images (what the evaluation loop spent besides both sides)
    latency: float | None = None


class Report(Section):
    """report.json."""

    schema_name: str = Field(SCHEMA, alias="schema")
    schema_version: int = SCHEMA_VERSION
    created: str = ""
    toolchain_version: str = ""
    command: list[str] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)
    artifacts: Artifacts = Field(default_factory=Artifacts)
    environment: dict[str, Any] = Field(default_factory=dict)
    source: dict[str, Any] | None = None  # a bare .onnx verified without an export directory
    model: ModelRecord | None = None
    precision: str | None = None
    weights: WeightsRecord | None = None
    export: ExportRecord | None = None
    calibration: CalibrationRecord | None = None
    quantization: QuantizationRecord | None = None
    targets: dict[str, TargetRecord] = Field(default_factory=dict)
    mixed_precision: dict[str, Any] | None = None
    engine: EngineRecord | None = None
    checksums: dict[str, Any] | None = None
    verification: VerificationRecord | None = None
    gates: GatesRecord | None = None
    sweep: dict[str, Any] | None = None  # a sweep step's record (resume fingerprint)
    stages: StagesRecord | None = None

    def record_stages(self, **seconds: float | None) -> None:
        """Set stage times (seconds, rounded to ms) in ``stages``, creating the section on first use."""
        if self.stages is None:
            self.stages = StagesRecord()
        for name, value in seconds.items():
            setattr(self.stages, name, None if value is None else round(float(value), 3))

    def add_warning(self, message: str) -> None:
        if message not in self.warnings:
            self.warnings.append(message)

    def to_json(self) -> dict[str, Any]:
        """The JSON document: set fields only (an absent section stays absent), keys as written."""
        return self.model_dump(mode="json", by_alias=True, exclude_unset=True)


def new_report(command: list[str], environment_record: dict[str, Any]) -> Report:
    """An empty report with the header every stage relies on; ``environment_record`` is ``machine.describe()``."""
    return Report(
        schema=SCHEMA, schema_version=SCHEMA_VERSION,
        created=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        toolchain_version=toolchain_version(), command=list(command), warnings=[], artifacts=Artifacts(),
        environment=environment_record,
    )


def add_warning(report: Report, message: str) -> None:
    report.add_warning(message)


def write_report(directory: Path, report: Report) -> Path:
    """Atomically write ``directory/report.json``."""
    path = directory / REPORT_NAME
    write_json(path, report.to_json())
    return path


def parse_report(data: Any, label: str) -> Report:
    """``data`` (parsed JSON) as a Report; ``InputError`` naming the first bad field otherwise."""
    hint = "re-run `resnext-deploy export` for this directory"
    if not isinstance(data, dict):
        raise InputError(f"{label} is not a report object", hint=hint)
    if data.get("schema") != SCHEMA or data.get("schema_version") not in READABLE_VERSIONS:
        raise InputError(
            f"{label} has schema {data.get('schema')!r} version {data.get('schema_version')!r}, "
            f"expected {SCHEMA!r} version {' or '.join(map(str, READABLE_VERSIONS))}",
            hint="re-export with this version of resnext-deploy",
        )
    try:
        return Report.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise InputError(f"{label}: {where}: {first['msg']}", hint=hint) from None


def read_report(directory: Path) -> Report:
    """Read and check an export directory's report.json."""
    path = directory / REPORT_NAME
    try:
        if path.stat().st_size > MAX_REPORT_BYTES:
            raise InputError(f"{path} is {path.stat().st_size:,} bytes, not a report", hint="re-run `resnext-deploy export`")
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{directory} has no {REPORT_NAME}", hint="point at a directory written by `resnext-deploy export`") from None
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise InputError(f"{path} is not valid JSON: {str(exc)[:200]}", hint="re-run `resnext-deploy export` for this directory") from None
    return parse_report(data, str(path))


def json_schema() -> dict[str, Any]:
    """The JSON Schema of report.json (``docs/report.schema.json``)."""
    schema = Report.model_json_schema(by_alias=True)
    schema["$id"] = f"https://resnext-deploy/{SCHEMA}/v{SCHEMA_VERSION}"
    schema["title"] = "resnext-deploy report.json"
    return schema


if __name__ == "__main__":  # python -m resnext_deploy.report > docs/report.schema.json
    json.dump(json_schema(), sys.stdout, indent=2)
    sys.stdout.write("\n")
