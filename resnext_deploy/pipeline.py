"""The export pipeline: zoo spec -> torch model -> FP32 ONNX -> precision artifact -> engine -> verify.

Each stage reads the previous stage's artifact from disk, so any stage can be re-run alone.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from resnext_deploy import console
from resnext_deploy.errors import NotAvailableError, OutputError, UsageError
from resnext_deploy.report import RANDOM_WEIGHTS_WARNING, add_warning, new_report, write_report
from resnext_deploy.zoo import ModelSpec, get_model_spec

PRECISIONS = ("fp32", "fp16", "int8")
BACKENDS = ("auto", "onnxruntime", "tensorrt")
FP32_NAME = "model.onnx"


def artifact_name(precision: str) -> str:
    """File name of a precision artifact inside an export directory."""
    return FP32_NAME if precision == "fp32" else f"model.{precision}.onnx"


@dataclass
class ExportOptions:
    """Everything `resnext-deploy export` takes, validated before any heavy work starts."""

    model: str
    precision: str = "fp32"
    backend: str = "auto"
    weights: str = "pretrained"
    output: Path | None = None
    opset: int = 17
    force: bool = False

    def resolved_output(self) -> Path:
        return self.output if self.output is not None else Path("out") / f"{self.model}-{self.precision}"


def validate(options: ExportOptions) -> ModelSpec:
    """Check names and values up front; return the zoo spec."""
    spec = get_model_spec(options.model)
    if options.precision not in PRECISIONS:
        raise UsageError(f"unknown precision '{options.precision}'", hint=f"use one of: {', '.join(PRECISIONS)}")
    if options.backend not in BACKENDS:
        raise UsageError(f"unknown backend '{options.backend}'", hint=f"use one of: {', '.join(BACKENDS)}")
    if options.precision != "fp32":
        raise NotAvailableError(
            f"--precision {options.precision} is not yet available in this release",
            hint="export with --precision fp32 for now",
        )
    if options.backend != "auto":
        raise NotAvailableError(
            f"--backend {options.backend} is not yet available in this release", hint="leave --backend at auto"
        )
    return spec


def prepare_output_dir(directory: Path, force: bool, names: tuple[str, ...]) -> None:
    """Create ``directory`` and make sure it is writable and holds nothing we would overwrite."""
    existing = [name for name in dict.fromkeys(names) if (directory / name).exists()]
    if existing and not force:
        raise OutputError(
            f"{directory} already holds {', '.join(existing)}",
            hint="pass --force to overwrite, or choose another --output directory",
        )
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise OutputError(
            f"cannot write to {directory}: {exc.strerror or exc}", hint="choose a writable --output directory"
        ) from None


def run_export(options: ExportOptions, command: list[str] | None = None) -> tuple[Path, dict[str, Any]]:
    """Run the whole export job; return the output directory and the report written there."""
    from exporters.export import export_fp32
    from exporters.models import build_model

    spec = validate(options)
    output = options.resolved_output()
    prepare_output_dir(output, options.force, (FP32_NAME, artifact_name(options.precision), "report.json"))
    report = new_report(command or [])
    report["model"] = spec.to_dict()
    report["precision"] = options.precision

    with console.stage(f"build {spec.name} ({options.weights} weights)"):
        model, weights = build_model(spec, options.weights)
    report["weights"] = weights.to_dict()
    if weights.is_random:
        add_warning(report, RANDOM_WEIGHTS_WARNING)
        console.warn(RANDOM_WEIGHTS_WARNING)

    metadata = {
        "model_name": spec.name,
        "preprocess": spec.preprocess.to_dict(),
        "num_classes": spec.num_classes,
        "weights": {"origin": weights.origin, "kind": weights.kind, "sha256": weights.sha256},
        "toolchain_version": report["toolchain_version"],
        "precision": "fp32",
    }
    with console.stage("fold BatchNorm, export to ONNX, simplify, check parity"):
        exported = export_fp32(
            model, output / FP32_NAME, input_size=spec.preprocess.input_size, metadata=metadata, opset=options.opset
        )
    report["export"] = exported.to_dict()
    report["artifacts"]["fp32"] = FP32_NAME
    if not exported.simplify.applied:
        add_warning(report, exported.simplify.reason)
        console.warn(exported.simplify.reason)
    write_report(output, report)
    return output, report
