"""The export pipeline: zoo spec -> torch model -> FP32 ONNX -> precision artifact -> engine -> verify.

Each stage reads the previous stage's artifact from disk, so any stage can be re-run alone.
This module only orders the stages and records them in report.json; the work lives in
``exporters``, ``calibration``, ``engines`` and ``resnext_deploy.verification``.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from resnext_deploy import console
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
    from resnext_deploy.calibration.datasets import scan_images
    from resnext_deploy.calibration.manifest import Manifest

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
    from resnext_deploy.engines import resolve_backend, resolve_recipe

    spec = validate(options)
    check_tuning_source(options)
    backend, backend_reason = resolve_backend(options.backend, options.precision)
    recipe = resolve_recipe(options.recipe, backend.name)
    targets = int8_targets(recipe, options.calibration.targets) if options.precision == "int8" else {}
    output = options.resolved_output()
    prepare_output_dir(output, options.force, (FP32_NAME, artifact_name(options.precision), *targets.values(), REPORT_NAME))
    report = new_report(command or [])
    report["model"] = spec.to_dict()
    report["precision"] = options.precision
    console.err.print(f"[dim]{backend_reason}[/]")

    if options.fp32_from is not None:
        _reuse_fp32(Path(options.fp32_from), output, report)
    else:
        _export_fp32(spec, options, output, report)
    write_report(output, report)
    artifact = output / _engine_source(targets, backend.name, options.precision)
    mixed: FallbackOutcome | None = None
    if options.precision == "fp16":
        _convert_fp16(output, report)
    elif options.precision == "int8":
        manifest, loaded = _quantize_int8(spec, options.calibration, targets, output, report,
                                          options.mixed_precision.tune_size)
        write_report(output, report)
        mixed = _mixed_precision(spec, options, recipe, targets, backend, output, report, manifest, loaded)
    write_report(output, report)
    if options.build_engine:
        _build_engine(backend, backend_reason, artifact, options, report)
        write_report(output, report)
    if options.verify is not None:
        try:
            report = _verify(output, options)
        except GateFailed as failed:
            if mixed is not None:
                mixed.raise_if_failed(failed)
            raise
    if mixed is not None:
        mixed.raise_if_failed()
    return output, report


def default_eval_data(calib: CalibrationOptions) -> Path | None:
    """An ImageNet root given for calibration (train/) also holds the evaluation split (val/)."""
    if calib.data is not None and calib.labels_file is None and (Path(calib.data) / "val").is_dir():
        return Path(calib.data)
    return None


def _verify(output: Path, options: ExportOptions) -> dict[str, Any]:
    """Verify the fresh export against its FP32 baseline; a failed gate raises after every output is written."""
    import dataclasses

    from resnext_deploy.verification import verify_directory
    from resnext_deploy.verification.outputs import print_summary

    verify_options = options.verify
    if verify_options.eval_data is None:
        verify_options = dataclasses.replace(verify_options, eval_data=default_eval_data(options.calibration))
    outcome = verify_directory(output, verify_options)
    print_summary(outcome.report)
    outcome.raise_for_gates()
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


def _calibration_images(
    spec: ModelSpec, calib: CalibrationOptions, output: Path, report: dict[str, Any], tune_size: int = 0
) -> Any:
    """Scan, pick (or re-use) the subset and the tuning slice, pin them in a manifest, decode the subset."""
    from resnext_deploy.calibration.datasets import scan_images
    from resnext_deploy.calibration.manifest import Manifest, select_subset
    from resnext_deploy.calibration.preprocess import load_images

    assert calib.data is not None  # validate() guarantees it
    if calib.manifest is not None:
        manifest = Manifest.read(calib.manifest)
        root = Path(calib.data).expanduser().resolve()
        if manifest.split and (root / manifest.split).is_dir():
            root = root / manifest.split
        records = manifest.resolve(root)
        manifest = dataclasses.replace(manifest, root=str(root))  # where its images are on this machine
        description = f"{len(records)} images from manifest {calib.manifest}"
        if tune_size and not manifest.tuning:
            manifest = _with_tuning(manifest, scan_images(calib.data, calib.labels_file, split="train"), tune_size)
    else:
        scan = scan_images(calib.data, calib.labels_file, split="train")
        records = select_subset(scan.records, calib.size, calib.seed)
        manifest = Manifest.from_records(records, root=scan.root, layout=scan.layout, seed=calib.seed, split=scan.split)
        description = scan.describe()
        if tune_size:
            manifest = _with_tuning(manifest, scan, tune_size)
    manifest_path = output / CALIBRATION_MANIFEST
    manifest.write(manifest_path)
    console.err.print(f"[dim]calibration subset: {len(records)} of {description}[/]")
    loaded = load_images(records, spec.preprocess, workers=calib.workers, strict=calib.strict)
    if loaded.skipped:
        names = ", ".join(name for name, _ in loaded.skipped[:5])
        console.warn(f"skipped {len(loaded.skipped)} unreadable calibration image(s): {names}")
    report["calibration"] = {
        "data": str(manifest.root),
        "layout": manifest.layout,
        "split": manifest.split,
        "requested_size": calib.size,
        "size": len(loaded),
        "seed": manifest.seed,
        "method": calib.method,
        "manifest_sha256": manifest.sha256,
        "skipped": len(loaded.skipped),
        "skipped_files": [{"file": name, "reason": reason} for name, reason in loaded.skipped],
        "tuning": {"size": len(manifest.tuning), "sha256": manifest.tuning_sha256},
    }
    report["artifacts"]["calibration_manifest"] = CALIBRATION_MANIFEST
    return manifest, loaded


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
                   report: dict[str, Any], tune_size: int = 0) -> Any:
    """One FP32 export, one calibration subset and one statistics pass; one Q/DQ artifact per target recipe.

    Returns (manifest, calibration images) for the mixed-precision stage.
    """
    from resnext_deploy.calibration.quantize import quantize_int8

    calib = dataclasses.replace(calib, method=_int8_method(calib, list(targets)))
    manifest, loaded = _calibration_images(spec, calib, output, report, tune_size)
    for index, (recipe, name) in enumerate(targets.items()):
        with console.stage(f"calibrate ({calib.method}) and quantize to INT8 ({recipe} recipe) -> {name}"):
            result = quantize_int8(
                output / FP32_NAME,
                output / name,
                loaded.array,
                manifest_sha256=manifest.sha256,
                method=calib.method,
                recipe=recipe,
                keep_grouped_float=calib.keep_grouped_float,
                cache_dir=calib.cache_dir,
                calibration_record={"skipped": len(loaded.skipped), "size": len(loaded)},
            )
        _record_int8(result, recipe, name, index == 0, output, report)
    return manifest, loaded


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


def _with_tuning(manifest: Any, scan: Any, tune_size: int) -> Any:
    """The manifest with a tuning slice: the next images of the same stratified order, never calibration ones."""
    from resnext_deploy.calibration.manifest import select_subset

    held_out = [record for record in scan.records if record.relpath not in manifest.relpaths]
    if not held_out:
        return manifest
    return manifest.with_tuning(select_subset(held_out, tune_size, manifest.seed))


def _mixed_precision(
    spec: ModelSpec, options: ExportOptions, recipe: str, targets: dict[str, str], backend: Any, output: Path,
    report: dict[str, Any], manifest: Any, loaded: Any,
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
    with prepare_quantization(
        output / FP32_NAME, loaded.array, manifest_sha256=manifest.sha256, method=_int8_method(calib, list(targets)),
        recipe=recipe, keep_grouped_float=calib.keep_grouped_float, cache_dir=calib.cache_dir,
    ) as setup:
        outcome, result = run_fallback(output, options.mixed_precision, setup, manifest, spec.preprocess, backend,
                                       options.engine, {"skipped": len(loaded.skipped), "size": len(loaded)})
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
    report["engine"] = {"backend": backend.name, "reason": reason, "artifact": built.to_dict()}
    report["artifacts"]["engine"] = built.path.name
    report["artifacts"]["engine_manifest"] = built.sidecar.name
