"""The export pipeline: zoo spec -> torch model -> FP32 ONNX -> precision artifact -> engine -> verify.

Each stage reads the previous stage's artifact from disk, so any stage can be re-run alone.
This module only orders the stages and records them in report.json; the work lives in
``exporters``, ``calibration``, ``engines`` and ``resnext_deploy.verification``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from resnext_deploy import console, outdir
from resnext_deploy.errors import GateFailed, InputError, OutputError, UsageError
from resnext_deploy.exporters.onnx_export import DEFAULT_EXPORTER, resolve_opset
from resnext_deploy.layout import (
    CALIBRATION_MANIFEST, FP32_NAME, PRECISIONS, REPORT_NAME, SENSITIVITY_NAME, SENSITIVITY_PLOT_NAME, artifact_name,
    stats_name,
)
from resnext_deploy.mixed_precision import FallbackOutcome, MixedPrecisionOptions
from resnext_deploy.report import RANDOM_WEIGHTS_WARNING, add_warning, new_report, write_report
from resnext_deploy.zoo import ModelSpec, get_model_spec

CALIB_METHODS = ("auto", "entropy", "minmax", "percentile")


@dataclass
class CalibrationOptions:
    """Where the INT8 calibration images come from and how statistics are computed."""

    data: Path | None = None
    labels_file: Path | None = None
    size: int = 512
    manifest: Path | None = None
    method: str = "auto"  # the recipe's default
    seed: int = 0
    strict: bool = False
    keep_grouped_float: bool | None = None
    cache_dir: Path | None = None
    workers: int | None = None
    targets: tuple[str, ...] = ()  # other backends' INT8 recipes to make too (model.int8.<target>.onnx)
    min_label_coverage: float = 0.9  # data.datasets.MIN_LABEL_COVERAGE; 0 accepts a labels file covering any part
    decode_batch: int = 32  # images decoded at a time: calibration streams, it never holds the whole subset


@dataclass
class ExportOptions:
    """Everything `resnext-deploy export` takes, validated before any heavy work starts."""

    model: str
    precision: str = "fp32"
    backend: str = "auto"
    recipe: str = "auto"
    weights: str = "pretrained"
    output: Path | None = None
    opset: int | None = None  # None: the exporter's default
    exporter: str = DEFAULT_EXPORTER
    simplify: bool = True
    atol: float = 1e-4  # parity vs PyTorch: |diff| <= atol + rtol * max|logit|
    rtol: float = 1e-3
    input_size: int | None = None  # one of the zoo's sizes; None = the zoo's default
    force: bool = False
    build_engine: bool = True
    calibration: CalibrationOptions = field(default_factory=CalibrationOptions)
    engine: Any = None  # engines.BuildOptions (batch profile, threads, TensorRT settings); None = defaults
    verify: Any = None  # a VerifyOptions: the run ends with verification and gates; None skips it
    fp32_from: Path | None = None  # start from this earlier export's model.onnx instead of exporting again (sweeps)
    mixed_precision: MixedPrecisionOptions = field(default_factory=MixedPrecisionOptions)

    def resolved_output(self) -> Path:
        return self.output if self.output is not None else Path("out") / f"{self.model}-{self.precision}"


def _check_choice(kind: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise UsageError(f"unknown {kind} '{value}'", hint=f"use one of: {', '.join(choices)}")


def validate(options: ExportOptions) -> ModelSpec:
    """Check names, values and required inputs up front; return the zoo spec at the chosen input size."""
    from resnext_deploy.engines import backend_names, recipe_names

    spec = get_model_spec(options.model)
    spec = dataclasses.replace(spec, preprocess=spec.preprocess_for(options.input_size))
    if options.atol < 0 or options.rtol < 0:
        raise UsageError("--atol and --rtol must not be negative", hint="the defaults are --atol 1e-4 --rtol 1e-3")
    _check_choice("precision", options.precision, PRECISIONS)
    _check_choice("backend", options.backend, backend_names())
    _check_choice("recipe", options.recipe, recipe_names())
    resolve_opset(options.exporter, options.opset)
    calib = options.calibration
    _check_choice("calibration method", calib.method, CALIB_METHODS)
    for target in calib.targets:
        _check_choice("target", target, backend_names(with_auto=False))
    if options.precision == "int8" and calib.data is None:
        raise UsageError(
            "--precision int8 needs calibration images",
            hint="pass --calib-data DIR (an ImageNet train/ or val/ folder; --calib-manifest FILE pins the subset)",
        )
    if calib.manifest is not None and calib.data is None:
        raise UsageError("--calib-manifest needs --calib-data", hint="pass the image folder the manifest refers to")
    if calib.size <= 0:
        raise UsageError(f"--calib-size must be positive, got {calib.size}", hint="NVIDIA recommends >= 500 for CNNs")
    if calib.decode_batch <= 0 or not 0.0 <= calib.min_label_coverage <= 1.0:
        raise UsageError("calibration decode batch must be positive and label coverage within 0..1")
    if options.fp32_from is not None and not Path(options.fp32_from).is_file():
        raise InputError(f"FP32 model {options.fp32_from} does not exist", hint="export the FP32 model first")
    _validate_mixed_precision(options)
    eval_data = getattr(options.verify, "eval_data", None)
    for flag, folder in (("--calib-data", calib.data if options.precision == "int8" else None), ("--eval-data", eval_data)):
        if folder is not None and not Path(folder).is_dir():
            raise InputError(f"{flag} {folder} is not a folder", hint="pass the folder holding your ImageNet images")
    return spec


def _validate_mixed_precision(options: ExportOptions) -> None:
    mixed = options.mixed_precision
    if mixed.tune_size <= 0:
        raise UsageError(f"--tune-size must be positive, got {mixed.tune_size}", hint="for example --tune-size 128")
    if mixed.probe_images <= 0:
        raise UsageError(f"probe images must be positive, got {mixed.probe_images}")
    if mixed.enabled and options.precision != "int8":
        raise UsageError("accuracy targets (--target-*) drive INT8 mixed precision",
                         hint="add --precision int8, or drop the --target-* options")


def check_tuning_source(options: ExportOptions) -> None:
    """With a target, the calibration source must hold images beyond the calibration subset (cheap: a folder scan)."""
    from resnext_deploy.data.datasets import scan_images
    from resnext_deploy.data.manifest import Manifest

    mixed, calib = options.mixed_precision, options.calibration
    if not mixed.enabled or calib.data is None:
        return
    pinned = Manifest.read(calib.manifest) if calib.manifest is not None else None
    if pinned is not None and pinned.tuning:
        return
    scan = scan_images(calib.data, calib.labels_file, split="train")
    taken = len(pinned.entries) if pinned is not None else min(calib.size, len(scan.records))
    if len(scan.records) - taken <= 0:
        raise UsageError(
            f"no images left for tuning: the calibration subset takes all {len(scan.records)} images of {scan.root}",
            hint="lower --calib-size so that held-out images remain for the accuracy target (--tune-size of them are used)",
        )
    if options.mixed_precision.targets.top1_drop_pp is not None and not scan.labelled:
        raise UsageError("--target-top1-drop needs labelled tuning images", hint="use --target-cosine or --target-agreement")


def prepare_output_dir(directory: Path, force: bool, names: tuple[str, ...]) -> None:
    """Create ``directory`` and make sure it is writable and holds none of ``names`` (a sweep's own folder)."""
    import tempfile

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


def _check_existing(directory: Path, force: bool) -> None:
    """Refuse to overwrite an earlier export's files without ``--force``."""
    existing = sorted(outdir.owned_files(directory))
    if existing and not force:
        raise OutputError(
            f"{directory} already holds {', '.join(existing[:4])}{', ...' if len(existing) > 4 else ''}",
            hint="pass --force to replace that export (only this run's files remain), or choose another --output directory",
        )


@contextlib.contextmanager
def output_directory(directory: Path, force: bool, command: list[str]) -> Iterator[Path]:
    """Lock ``directory`` for the run and yield a fresh staging folder inside it.

    What an earlier, killed run left in the staging folder is removed first; the staging folder is
    removed at the end, and so is ``directory`` itself when this run created it and failed.
    """
    created = not directory.exists()
    _check_existing(directory, force)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot write to {directory}: {exc.strerror or exc}", hint="choose a writable --output directory") from None
    try:
        with outdir.locked(directory, command):
            _check_existing(directory, force)
            try:
                yield outdir.reset_staging(directory)
            finally:
                outdir.remove_staging(directory)
    except BaseException:
        if created:
            with contextlib.suppress(OSError):
                directory.rmdir()  # only when empty: nothing of ours, nothing of the user's
        raise


def run_export(options: ExportOptions, command: list[str] | None = None) -> tuple[Path, dict[str, Any]]:
    """Run the whole export job; return the output directory and the report written there.

    Every model-free check runs first (``preflight``); the artifacts are built in the output
    directory's staging folder and moved into place at the end, so a failed or interrupted run
    leaves an earlier export untouched and ``--force`` leaves only this run's files.
    """
    from resnext_deploy import preflight
    from resnext_deploy.engines import resolve_backend, resolve_recipe

    spec = validate(options)
    check_tuning_source(options)
    backend, backend_reason = resolve_backend(options.backend, options.precision)
    recipe = resolve_recipe(options.recipe, backend.name)
    targets = int8_targets(recipe, options.calibration.targets) if options.precision == "int8" else {}
    checked = preflight.check_export(spec, options, default_eval_data(options.calibration))
    output = options.resolved_output()
    with output_directory(output, options.force, list(command or [])) as staging:
        staged, work = staging / "export", staging / "work"
        staged.mkdir()
        work.mkdir()
        report = new_report(command or [])
        report["model"] = spec.to_dict()
        report["precision"] = options.precision
        console.err.print(f"[dim]{backend_reason}[/]")

        if options.fp32_from is not None:
            _reuse_fp32(Path(options.fp32_from), staged, report)
        else:
            _export_fp32(spec, options, staged, report)
        artifact = staged / _engine_source(targets, backend.name, options.precision)
        mixed: FallbackOutcome | None = None
        if options.precision == "fp16":
            _convert_fp16(staged, report)
        elif options.precision == "int8":
            manifest = _quantize_int8(spec, options.calibration, targets, staged, report, checked.calibration, work)
            mixed = _mixed_precision(spec, options, recipe, targets, backend, staged, report, manifest, work)
        if options.build_engine:
            _build_engine(backend, backend_reason, artifact, options, report)
        outdir.record_checksums(staged, report)
        write_report(staged, report)
        outcome = _verify(staged, options, checked.eval_data) if options.verify is not None else None
        _commit(staged, output)
    if outcome is not None:
        report = _finish_verification(outcome, staged, output, mixed)
    if mixed is not None:
        mixed.raise_if_failed()
    return output, report


def _commit(staged: Path, output: Path) -> None:
    """Move this run's files into the output directory; say which files of an earlier run were removed."""
    stale = outdir.commit(staged, output)
    if stale:
        console.err.print(f"[dim]--force: removed {len(stale)} file(s) of the earlier export this run did not write: "
                          f"{', '.join(stale)}[/]")


def default_eval_data(calib: CalibrationOptions) -> Path | None:
    """An ImageNet root given for calibration (train/) also holds the evaluation split (val/)."""
    if calib.data is not None and calib.labels_file is None and (Path(calib.data) / "val").is_dir():
        return Path(calib.data)
    return None


def _verify(staged: Path, options: ExportOptions, eval_data: Path | None) -> Any:
    """Verify the fresh export (still in the staging folder) against its FP32 baseline; write its reports."""
    from resnext_deploy.verification import verify_directory

    verify_options = dataclasses.replace(options.verify, eval_data=eval_data)
    if verify_options.min_label_coverage is None:
        verify_options.min_label_coverage = options.calibration.min_label_coverage
    return verify_directory(staged, verify_options, lock=False)


def _finish_verification(outcome: Any, staged: Path, output: Path, mixed: FallbackOutcome | None) -> dict[str, Any]:
    """Print the verification summary of the committed export; a failed gate raises (exit 1) after every file is in place."""
    from resnext_deploy.verification.outputs import print_summary

    outcome.directory = output
    outcome.outputs = {key: output / path.relative_to(staged) if path.is_relative_to(staged) else path
                       for key, path in outcome.outputs.items()}
    print_summary(outcome.report)
    try:
        outcome.raise_for_gates()
    except GateFailed as failed:
        if mixed is not None:
            mixed.raise_if_failed(failed)
        raise
    return outcome.report


def _export_fp32(spec: ModelSpec, options: ExportOptions, output: Path, report: dict[str, Any]) -> None:
    from resnext_deploy.exporters.export import export_fp32
    from resnext_deploy.exporters.models import build_model

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
            model, output / FP32_NAME, input_size=spec.preprocess.input_size, metadata=metadata,
            opset=options.opset, exporter=options.exporter, simplify_graph=options.simplify,
            atol=options.atol, rtol=options.rtol,
        )
    report["export"] = exported.to_dict()
    report["artifacts"]["fp32"] = FP32_NAME
    if not exported.simplify.applied and options.simplify:
        add_warning(report, exported.simplify.reason)
        console.warn(exported.simplify.reason)


def _reuse_fp32(source: Path, output: Path, report: dict[str, Any]) -> None:
    """Start from an earlier export's FP32 ONNX (hard-linked, else copied) and its weights and export records."""
    from resnext_deploy.metadata import read_metadata
    from resnext_deploy.report import read_report

    target = output / FP32_NAME
    if source.resolve() != target.resolve():
        target.unlink(missing_ok=True)
        try:
            os.link(source, target)
        except OSError:
            shutil.copyfile(source, target)
    earlier = read_report(source.parent) if (source.parent / REPORT_NAME).is_file() else {}
    report["weights"] = earlier.get("weights") or read_metadata(target).get("weights", {})
    report["export"] = {**earlier.get("export", {}), "reused_from": str(source)}
    for warning in earlier.get("warnings", []):
        add_warning(report, warning)
    report["artifacts"]["fp32"] = FP32_NAME
    console.err.print(f"[dim]FP32 model reused from {source} (no export)[/]")


def _convert_fp16(output: Path, report: dict[str, Any]) -> None:
    from resnext_deploy.calibration.fp16 import convert_fp16

    with console.stage("convert to FP16 (inputs and outputs stay FP32)"):
        result = convert_fp16(output / FP32_NAME, output / artifact_name("fp16"))
    report["quantization"] = result.to_dict() | {"path": artifact_name("fp16")}
    report["artifacts"]["fp16"] = artifact_name("fp16")


class DecodedBatches:
    """The calibration subset decoded ``batch`` images at a time, each time it is iterated.

    Calibration consumes it as it decodes (memory does not grow with the subset), and not at all
    when the statistics are cached; ``read`` and ``skipped`` say what the last pass decoded.
    """

    def __init__(self, records: list[Any], spec: ModelSpec, calib: CalibrationOptions) -> None:
        self.records, self.spec, self.calib = records, spec, calib
        self.read = 0
        self.skipped: list[tuple[str, str]] = []

    def __iter__(self) -> Iterator[Any]:
        from resnext_deploy.data.preprocess import iter_batches

        self.read, self.skipped = 0, []
        for loaded in iter_batches(self.records, self.spec.preprocess, self.calib.decode_batch, workers=self.calib.workers,
                                   strict=self.calib.strict):
            self.read += len(loaded)
            self.skipped += loaded.skipped
            yield loaded.array


def _calibration_images(spec: ModelSpec, calib: CalibrationOptions, plan: Any, output: Path) -> tuple[Any, DecodedBatches]:
    """Pin the checked subset (and tuning slice) in the export's manifest; return it and its batches, decoded on demand."""
    plan.manifest.write(output / CALIBRATION_MANIFEST)
    console.err.print(f"[dim]calibration subset: {len(plan.records)} of {plan.description}[/]")
    return plan.manifest, DecodedBatches(plan.records, spec, calib)


def _calibration_section(calib: CalibrationOptions, manifest: Any, batches: DecodedBatches, used: int) -> dict[str, Any]:
    """report.json's calibration section (skipped files are known when the images were decoded)."""
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
        "method": calib.method,
        "manifest_sha256": manifest.sha256,
        "decoded": batches.read + len(batches.skipped) > 0,
        "skipped": len(manifest.entries) - used,
        "skipped_files": [{"file": name, "reason": reason} for name, reason in batches.skipped],
        "tuning": {"size": len(manifest.tuning), "sha256": manifest.tuning_sha256},
    }


def int8_targets(recipe: str, backends: tuple[str, ...]) -> dict[str, str]:
    """Recipe -> INT8 artifact name: the export's own recipe is ``model.int8.onnx``; each target backend's default
    recipe gets ``model.int8.<recipe>.onnx`` (backends sharing a recipe share its artifact)."""
    from resnext_deploy.engines import default_recipe

    names = {recipe: artifact_name("int8")}
    for backend in backends:
        target = default_recipe(backend)
        names.setdefault(target, artifact_name("int8", target))
    return names


def _engine_source(targets: dict[str, str], backend: str, precision: str) -> str:
    """The artifact the export's engine is built from: the one made with the backend's recipe when there is one."""
    from resnext_deploy.engines import default_recipe

    return targets.get(default_recipe(backend), artifact_name(precision))


def _int8_method(calib: CalibrationOptions, recipes: list[str]) -> str:
    """The calibration method: the one asked for, else one that serves every recipe (statistics computed once)."""
    from resnext_deploy.calibration.recipes import get_recipe, shared_method

    if calib.method != "auto":
        return calib.method
    return shared_method([get_recipe(name, calib.keep_grouped_float) for name in recipes])


def _quantize_int8(spec: ModelSpec, calib: CalibrationOptions, targets: dict[str, str], output: Path,
                   report: dict[str, Any], plan: Any, work: Path) -> Any:
    """One FP32 export, one calibration subset and one statistics pass; one Q/DQ artifact per target recipe.

    Returns the manifest for the mixed-precision stage.
    """
    from resnext_deploy.calibration.quantize import quantize_int8

    calib = dataclasses.replace(calib, method=_int8_method(calib, list(targets)))
    manifest, batches = _calibration_images(spec, calib, plan, output)
    for index, (recipe, name) in enumerate(targets.items()):
        with console.stage(f"calibrate ({calib.method}) and quantize to INT8 ({recipe} recipe) -> {name}"):
            result = quantize_int8(
                output / FP32_NAME,
                output / name,
                batches,
                manifest_sha256=manifest.sha256,
                method=calib.method,
                recipe=recipe,
                keep_grouped_float=calib.keep_grouped_float,
                cache_dir=calib.cache_dir,
                calibration_record={"subset_size": len(manifest.entries)},
                work_dir=work,
            )
        if index == 0:
            report["calibration"] = _calibration_section(calib, manifest, batches, result.calibration_images)
            report["artifacts"]["calibration_manifest"] = CALIBRATION_MANIFEST
        _record_int8(result, recipe, name, index == 0, output, report)
    return manifest


def _record_int8(result: Any, recipe: str, name: str, own: bool, output: Path, report: dict[str, Any]) -> None:
    """report.json: the export's own artifact under ``quantization``/``artifacts.int8``, every one under ``targets``."""
    stats = stats_name(result.stats_file.name)
    if not (output / stats).is_file():
        shutil.copyfile(result.stats_file, output / stats)
    record = result.to_dict() | {"path": name, "stats_file": stats}
    report.setdefault("targets", {})[recipe] = {"artifact": name, "own": own, "quantization": record}
    report["artifacts"].setdefault("recipes", {})[recipe] = name
    if own:
        report["quantization"] = record
        report["artifacts"]["int8"] = name
        report["artifacts"]["calibration_stats"] = stats


def _mixed_precision(
    spec: ModelSpec, options: ExportOptions, recipe: str, targets: dict[str, str], backend: Any, output: Path,
    report: dict[str, Any], manifest: Any, work: Path,
) -> FallbackOutcome | None:
    """With an accuracy target: leave the most sensitive layers of the export's own INT8 artifact out of INT8
    until it holds (report: mixed_precision); other --targets artifacts stay fully INT8."""
    from resnext_deploy.calibration.quantize import prepare_quantization
    from resnext_deploy.mixed_precision import run_fallback

    if not options.mixed_precision.enabled:
        return None
    if not manifest.tuning:
        raise UsageError("no images left for tuning", hint="lower --calib-size so that held-out images remain")
    if len(targets) > 1:
        console.warn(f"mixed precision applies to {artifact_name('int8')} ({recipe} recipe); "
                     f"the other --targets artifacts stay fully INT8")
    calib = options.calibration
    with prepare_quantization(  # the statistics of the INT8 stage: from the cache or its copy in the export
        output / FP32_NAME, None, manifest_sha256=manifest.sha256, method=_int8_method(calib, list(targets)),
        recipe=recipe, keep_grouped_float=calib.keep_grouped_float, cache_dir=calib.cache_dir,
        stats_file=output / report["artifacts"]["calibration_stats"], work_dir=work,
    ) as setup:
        outcome, result = run_fallback(output, options.mixed_precision, setup, manifest, spec.preprocess, backend,
                                       options.engine, {"subset_size": len(manifest.entries)})
    first = report["quantization"]
    _record_int8(result, recipe, artifact_name("int8"), True, output, report)
    report["quantization"].update({key: first[key] for key in ("stats_cache_hit", "stats_source", "calibration_seconds")})
    report["mixed_precision"] = outcome.section
    report["artifacts"]["sensitivity"] = SENSITIVITY_NAME
    if (output / SENSITIVITY_PLOT_NAME).is_file():
        report["artifacts"]["sensitivity_plot"] = SENSITIVITY_PLOT_NAME
    (console.err.print if not outcome.failed else console.warn)(f"mixed precision: {outcome.section['summary']}")
    return outcome


def _build_engine(backend: Any, reason: str, artifact: Path, options: ExportOptions, report: dict[str, Any]) -> None:
    from resnext_deploy.engines import BuildOptions

    build_options = dataclasses.replace(options.engine or BuildOptions(), precision=options.precision)
    with console.stage(f"build the {backend.name} engine for {artifact.name}"):
        built = backend.build(artifact, build_options)
    recorded = built.to_dict()
    for key in ("path", "source_onnx", "sidecar"):  # relative: the export directory may move
        recorded[key] = Path(recorded[key]).relative_to(artifact.parent).as_posix()
    report["engine"] = {"backend": backend.name, "reason": reason, "artifact": recorded}
    report["artifacts"]["engine"] = built.path.name
    report["artifacts"]["engine_manifest"] = built.sidecar.name
