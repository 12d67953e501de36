"""The export flow: zoo spec -> torch model -> FP32 ONNX -> precision artifact -> engine -> verify.

Each stage reads the previous stage's artifact from disk, so any stage can be re-run alone. This
module only orders the stages and records them in report.json; the checks are ``preflight``'s, the
work lives in ``exporters``, ``calibration``, ``engines``, ``verification`` and ``mixed_precision``.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import time
from pathlib import Path
from typing import Any

from resnext_deploy import console, machine, outdir
from resnext_deploy.calibration.fp16 import convert_fp16, layer_float_types
from resnext_deploy.calibration.quantize import QuantizeConfig, prepare_quantization, quantize_int8
from resnext_deploy.data.manifest import Manifest
from resnext_deploy.data.preprocess import DecodedBatches
from resnext_deploy.engines.base import Backend
from resnext_deploy.errors import GateFailed, UsageError
from resnext_deploy.export.mixed_precision import FallbackOutcome, run_fallback
from resnext_deploy.export.options import CalibrationOptions, ExportOptions
from resnext_deploy.export.preflight import CalibrationPlan, ExportPlan, preflight
from resnext_deploy.exporters.export import export_fp32
from resnext_deploy.exporters.models import build_model
from resnext_deploy.layout import (
    CALIBRATION_MANIFEST,
    FP32_NAME,
    REPORT_NAME,
    SENSITIVITY_NAME,
    SENSITIVITY_PLOT_NAME,
    artifact_name,
    stats_name,
)
from resnext_deploy.metadata import read_metadata
from resnext_deploy.report import (
    RANDOM_WEIGHTS_WARNING,
    QuantizationRecord,
    Report,
    TargetRecord,
    new_report,
    read_report,
    write_report,
)
from resnext_deploy.verification.gates import TARGET_GATES, target_gates
from resnext_deploy.verification.outputs import print_summary
from resnext_deploy.verification.run import VerifyOutcome, verify_directory
from resnext_deploy.zoo import ModelSpec


def run_export(options: ExportOptions, command: list[str] | None = None) -> tuple[Path, Report]:
    """Run the whole export job; return the output directory and the report written there.

    Every model-free check runs first (``preflight``); the artifacts are built in the output
    directory's staging folder and moved into place at the end, so a failed or interrupted run
    leaves an earlier export untouched and ``--force`` leaves only this run's files.
    """
    plan = preflight(options)
    output = options.resolved_output()
    with outdir.output_directory(output, options.force, list(command or [])) as staging:
        staged, work = staging / "export", staging / "work"
        staged.mkdir()
        work.mkdir()
        report = new_report(command or [], machine.describe())
        report.model = plan.spec.to_dict()
        report.precision = options.precision
        console.err.print(f"[dim]{plan.backend_reason}[/]")

        # 1. FP32 ONNX: exported (BN folded, simplified, parity-checked) or reused from an earlier export
        if options.fp32_from is not None:
            _reuse_fp32(Path(options.fp32_from), staged, report)
        else:
            _export_fp32(plan.spec, options, staged, report)
        # 2. the precision artifact; INT8 may then keep its most sensitive layers in float
        mixed: FallbackOutcome | None = None
        if options.precision == "fp16":
            _convert_fp16(staged, report)
        elif options.precision == "int8":
            assert plan.calibration is not None
            _quantize_int8(plan, options.calibration, staged, report, work)
            mixed = _mixed_precision(plan, options, staged, report, work)
        # 3. the engine, from the artifact of the backend's recipe
        if options.build_engine:
            _build_engine(plan, staged / plan.engine_source, report)
        outdir.record_checksums(staged, report)
        if options.verify is None and mixed is not None:  # no verification: the targets are the only gates
            _record_target_gates(report)
        write_report(staged, report)
        # 4. verification against FP32 on the staged files; 5. the files move into place
        outcome = _verify(staged, options, plan.eval_data) if options.verify is not None else None
        _commit(staged, output)
    # 6. gates: a failed one raises (exit 1) after every file is in place
    if outcome is not None:
        report = _finish_verification(outcome, staged, output, mixed)
    if mixed is not None:
        mixed.raise_if_failed()
    return output, report


def _export_fp32(spec: ModelSpec, options: ExportOptions, output: Path, report: Report) -> None:
    started = time.perf_counter()
    with console.stage(f"build {spec.name} ({options.weights} weights)"):
        model, weights = build_model(spec, options.weights, options.seed)
    report.record_stages(model=time.perf_counter() - started)
    report.weights = weights.to_dict()
    if weights.is_random:
        report.add_warning(RANDOM_WEIGHTS_WARNING)
        console.warn(RANDOM_WEIGHTS_WARNING)
    metadata = {
        "model_name": spec.name,
        "preprocess": spec.preprocess.to_dict(),
        "num_classes": spec.num_classes,
        "weights": {"origin": weights.origin, "kind": weights.kind, "sha256": weights.sha256}
        | ({"seed": weights.seed} if weights.seed is not None else {}),
        "toolchain_version": report.toolchain_version,
        "precision": "fp32",
    }
    fp32 = options.fp32
    with console.stage("fold BatchNorm, export to ONNX, simplify, check parity"):
        exported = export_fp32(
            model, output / FP32_NAME, input_size=spec.preprocess.input_size, metadata=metadata,
            opset=fp32.opset, exporter=fp32.exporter, simplify_graph=fp32.simplify, atol=fp32.atol, rtol=fp32.rtol,
        )
    report.export = exported.to_dict()
    report.record_stages(**{name: exported.seconds.get(name) for name in ("fold", "export", "simplify", "parity")})
    report.artifacts.fp32 = FP32_NAME
    if not exported.simplify.applied and fp32.simplify:
        report.add_warning(exported.simplify.reason)
        console.warn(exported.simplify.reason)


def _reuse_fp32(source: Path, output: Path, report: Report) -> None:
    """Start from an earlier export's FP32 ONNX (hard-linked, else copied) and its weights and export records."""
    target = output / FP32_NAME
    if source.resolve() != target.resolve():
        target.unlink(missing_ok=True)
        try:
            os.link(source, target)
        except OSError:
            shutil.copyfile(source, target)
    earlier = read_report(source.parent) if (source.parent / REPORT_NAME).is_file() else None
    if earlier is not None and earlier.weights is not None:
        report.weights = earlier.weights
    else:
        report.weights = read_metadata(target).get("weights", {})
    export = earlier.export.model_dump(exclude_unset=True) if earlier is not None and earlier.export is not None else {}
    report.export = export | {"reused_from": str(source)}
    for warning in earlier.warnings if earlier is not None else []:
        report.add_warning(warning)
    report.artifacts.fp32 = FP32_NAME
    console.err.print(f"[dim]FP32 model reused from {source} (no export)[/]")


def _convert_fp16(output: Path, report: Report) -> None:
    with console.stage("convert to FP16 (inputs and outputs stay FP32)"):
        result = convert_fp16(output / FP32_NAME, output / artifact_name("fp16"))
    report.quantization = result.to_dict() | {"path": artifact_name("fp16")}
    report.artifacts.fp16 = artifact_name("fp16")


def _quantize_int8(plan: ExportPlan, calib: CalibrationOptions, output: Path, report: Report, work: Path) -> None:
    """One FP32 export, one calibration subset and one statistics pass; one Q/DQ artifact per target recipe."""
    calibration = plan.calibration
    assert calibration is not None
    manifest = calibration.manifest
    manifest.write(output / CALIBRATION_MANIFEST)  # the checked subset (and tuning slice), pinned in the export
    console.err.print(f"[dim]calibration subset: {len(calibration.records)} of {calibration.description}[/]")
    batches = DecodedBatches(calibration.records, plan.spec.preprocess, calib.decode_batch, workers=calib.workers,
                             strict=calib.strict)
    calibration_seconds = quantize_seconds = 0.0
    for index, (recipe, name) in enumerate(plan.targets.items()):
        with console.stage(f"calibrate ({calibration.method}) and quantize to INT8 ({recipe} recipe) -> {name}"):
            result = quantize_int8(output / FP32_NAME, output / name, batches, _quantize_config(plan, recipe, calib, work),
                                   calibration_record={"subset_size": len(manifest.entries)})
        calibration_seconds += result.calibration_seconds
        quantize_seconds += max(0.0, result.seconds - result.calibration_seconds)
        report.record_stages(calibration=calibration_seconds, quantize=quantize_seconds)
        if index == 0:
            report.calibration = _calibration_section(calib, calibration, batches, result.calibration_images)
            report.artifacts.calibration_manifest = CALIBRATION_MANIFEST
        _record_int8(result, recipe, name, index == 0, output, report)


def _quantize_config(plan: ExportPlan, recipe: str, calib: CalibrationOptions, work: Path) -> QuantizeConfig:
    """The quantizer's settings for ``recipe``: one calibration subset and method for every recipe of the export."""
    assert plan.calibration is not None
    return QuantizeConfig(manifest_sha256=plan.calibration.manifest.sha256, method=plan.calibration.method, recipe=recipe,
                          keep_grouped_float=calib.keep_grouped_float, cache_dir=calib.cache_dir, work_dir=work)


def _calibration_section(calib: CalibrationOptions, plan: CalibrationPlan, batches: DecodedBatches,
                         used: int) -> dict[str, Any]:
    """report.json's calibration section (skipped files are known when the images were decoded)."""
    manifest = plan.manifest
    if batches.skipped:
        names = ", ".join(name for name, _ in batches.skipped[:5])
        console.warn(f"skipped {len(batches.skipped)} unreadable calibration image(s): {names}")
    return {
        "data": str(manifest.root),
        "layout": manifest.layout,
        "split": manifest.split,
        "requested_size": calib.size,
        "size": used,
        "seed": manifest.seed,
        "method": plan.method,
        "manifest_sha256": manifest.sha256,
        "decoded": batches.read + len(batches.skipped) > 0,
        "skipped": len(manifest.entries) - used,
        "skipped_files": [{"file": name, "reason": reason} for name, reason in batches.skipped],
        "tuning": {"size": len(manifest.tuning), "sha256": manifest.tuning_sha256},
    }


def _record_int8(result: Any, recipe: str, name: str, own: bool, output: Path, report: Report) -> None:
    """report.json: the export's own artifact under ``quantization``/``artifacts.int8``, every one under ``targets``."""
    stats = stats_name(result.stats_file.name)
    if not (output / stats).is_file():
        shutil.copyfile(result.stats_file, output / stats)
    record = QuantizationRecord.model_validate(result.to_dict() | {"path": name, "stats_file": stats})
    report.targets[recipe] = TargetRecord(artifact=name, own=own, quantization=record)
    report.artifacts.recipes[recipe] = name
    if own:
        report.quantization = record.model_copy()
        report.artifacts.int8 = name
        report.artifacts.calibration_stats = stats


def _record_target_gates(report: Report) -> None:
    """report.json ``gates`` of an export that is not verified: the mixed-precision targets alone."""
    results = target_gates(report.mixed_precision)
    report.gates = {"passed": not any(r.failed for r in results), "failed": [r.name for r in results if r.failed],
                    "skipped": [r.name for r in results if r.status == "skipped"],
                    "results": [r.to_dict() for r in results]}


def _mixed_precision(plan: ExportPlan, options: ExportOptions, output: Path, report: Report,
                     work: Path) -> FallbackOutcome | None:
    """With an accuracy target: leave the most sensitive layers of the export's own INT8 artifact out of INT8
    until it holds (report: mixed_precision); other --targets artifacts stay fully INT8."""
    if not options.mixed_precision.enabled:
        return None
    calibration = plan.calibration
    assert calibration is not None
    manifest: Manifest = calibration.manifest
    if not manifest.tuning:
        raise UsageError("no images left for tuning", hint="lower --calib-size so that held-out images remain")
    if len(plan.targets) > 1:
        console.warn(f"mixed precision applies to {artifact_name('int8')} ({plan.recipe} recipe); "
                     f"the other --targets artifacts stay fully INT8")
    calib = options.calibration
    config = _quantize_config(plan, plan.recipe, calib, work)  # the INT8 stage's statistics: cached, or its copy here
    with prepare_quantization(output / FP32_NAME, None, config,
                              stats_file=output / str(report.artifacts.calibration_stats)) as setup:
        outcome, result = run_fallback(output, options.mixed_precision, setup, manifest, plan.spec.preprocess,
                                       plan.backend, options.engine, {"subset_size": len(manifest.entries)},
                                       fallback=plan.fallback_precision)
    first = report.quantization
    assert first is not None
    _record_int8(result, plan.recipe, artifact_name("int8"), True, output, report)
    assert report.quantization is not None
    for key in ("stats_cache_hit", "stats_source", "calibration_seconds"):  # the statistics of the first pass
        setattr(report.quantization, key, getattr(first, key, None))
    report.mixed_precision = outcome.section
    report.record_stages(sensitivity=outcome.section["sensitivity"]["seconds"], search=outcome.section["search_seconds"])
    report.artifacts.sensitivity = SENSITIVITY_NAME
    if (output / SENSITIVITY_PLOT_NAME).is_file():
        report.artifacts.sensitivity_plot = SENSITIVITY_PLOT_NAME
    (console.err.print if not outcome.failed else console.warn)(f"mixed precision: {outcome.section['summary']}")
    return outcome


def _build_engine(plan: ExportPlan, artifact: Path, report: Report) -> None:
    backend: Backend = plan.backend
    started = time.perf_counter()
    with console.stage(f"build the {backend.name} engine for {artifact.name}"):
        built = backend.build(artifact, plan.build_options)
    report.record_stages(engine_build=time.perf_counter() - started)
    recorded = built.to_dict()
    for key in ("path", "source_onnx", "sidecar"):  # relative: the export directory may move
        recorded[key] = Path(recorded[key]).relative_to(artifact.parent).as_posix()
    report.engine = {"backend": backend.name, "reason": plan.backend_reason, "artifact": recorded}
    if report.mixed_precision is not None and artifact.name == report.artifacts.int8:
        _record_fallback_types(report, artifact, built.metadata.get("float_layers_run_in"))
    report.artifacts.engine = built.path.name
    report.artifacts.engine_manifest = built.sidecar.name


def _record_fallback_types(report: Report, artifact: Path, engine_read_back: dict[str, str | None] | None) -> None:
    """report.json's ``mixed_precision.runs_in``: each kept layer's float type, read back from the compiled model
    where the engine exposes it (OpenVINO's runtime precision), else the graph's types (what ONNX Runtime and a
    strongly typed TensorRT network run)."""
    assert report.mixed_precision is not None
    layers = [layer["name"] for layer in report.mixed_precision["float_layers"]]
    if engine_read_back is not None:
        runs_in, source = engine_read_back, "compiled model (runtime precision)"
    else:
        runs_in, source = layer_float_types(artifact, layers), "graph types"
    report.mixed_precision = {**report.mixed_precision, "runs_in": runs_in, "runs_in_source": source}


def _verify(staged: Path, options: ExportOptions, eval_data: Path | None) -> VerifyOutcome:
    """Verify the fresh export (still in the staging folder) against its FP32 baseline; write its reports."""
    assert options.verify is not None
    verify_options = dataclasses.replace(options.verify, eval_data=eval_data,
                                         cache_dir=options.verify.cache_dir or options.calibration.cache_dir)
    if verify_options.min_label_coverage is None:
        verify_options.min_label_coverage = options.calibration.min_label_coverage
    return verify_directory(staged, verify_options, lock=False)


def _commit(staged: Path, output: Path) -> None:
    """Move this run's files into the output directory; say which files of an earlier run were removed."""
    stale = outdir.commit(staged, output)
    if stale:
        console.err.print(f"[dim]--force: removed {len(stale)} file(s) of the earlier export this run did not write: "
                          f"{', '.join(stale)}[/]")


def _finish_verification(outcome: VerifyOutcome, staged: Path, output: Path,
                         mixed: FallbackOutcome | None) -> Report:
    """Print the verification summary of the committed export; a failed gate raises (exit 1) after every file is in place."""
    outcome.directory = output
    outcome.outputs = {key: output / path.relative_to(staged) if path.is_relative_to(staged) else path
                       for key, path in outcome.outputs.items()}
    print_summary(outcome.report)
    try:
        outcome.raise_for_gates()
    except GateFailed as failed:
        others = [gate for gate in outcome.failed if gate.name not in TARGET_GATES]
        if mixed is not None:  # the missed target is named once, with its own hint; other failures follow
            mixed.raise_if_failed(failed if others else None)
        raise
    return outcome.report
