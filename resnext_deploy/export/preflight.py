"""Every check of an export that needs no model, run once before any heavy work; returns the resolved plan.

The values were checked when the options were made (``export.options``); this module checks what
needs the disk or the machine: the model name and input size, the opset, weights, the engine and
recipe, image folders (scanned once), the calibration manifest against its images, the tuning
images mixed precision needs, evaluation images that are also calibration images, a labels file
that covers too few images, the gates file and the JUnit path. A bad command fails in seconds,
before the FP32 export, and writes nothing; what the checks resolve is handed to the flow, so
nothing is scanned or hashed twice.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path

from resnext_deploy.calibration.recipes import get_recipe, shared_method
from resnext_deploy.data.datasets import ImageRecord, ScanResult, scan_images
from resnext_deploy.data.manifest import Manifest, select_subset
from resnext_deploy.data.preprocess import probe_images
from resnext_deploy.engines.base import Backend, BuildOptions
from resnext_deploy.engines.registry import AUTO, default_recipe
from resnext_deploy.engines.select import check_engine_recipe, resolve_backend, resolve_fallback_precision
from resnext_deploy.errors import InputError, UsageError, WeightsError
from resnext_deploy.export.options import CalibrationOptions, ExportOptions
from resnext_deploy.exporters.models import checkpoint_problem
from resnext_deploy.exporters.onnx_export import resolve_opset
from resnext_deploy.layout import artifact_name
from resnext_deploy.metadata import read_metadata
from resnext_deploy.verification.accuracy import load_eval_set
from resnext_deploy.verification.compare import load_earlier_run
from resnext_deploy.verification.gates import load_gates
from resnext_deploy.zoo import ModelSpec, get_model_spec


@dataclass
class CalibrationPlan:
    """The calibration subset (and tuning slice), pinned before the export starts."""

    manifest: Manifest
    records: list[ImageRecord]
    description: str
    method: str  # resolved: the one asked for, else one that serves every recipe of the export
    labelled: bool = True
    unreadable: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class ExportPlan:
    """What the checks resolved: model spec, engine and why, recipes and their artifacts, subsets, build options."""

    spec: ModelSpec
    precision: str
    backend: Backend
    backend_reason: str
    recipe: str
    targets: dict[str, str]  # recipe -> INT8 artifact name (the export's own recipe first)
    calibration: CalibrationPlan | None
    eval_data: Path | None
    build_options: BuildOptions
    fallback_precision: tuple[str, str] = ("fp32", "default")  # (what fallback layers run in on the engine, why)

    @property
    def engine_source(self) -> str:
        """The artifact the engine is built from: the one made with the backend's recipe when there is one."""
        return self.targets.get(default_recipe(self.backend.name), artifact_name(self.precision))


def check_values(options: ExportOptions) -> ModelSpec:
    """The checks that need neither disk nor engine: the zoo model at its input size, the opset; its spec."""
    spec = get_model_spec(options.model)
    spec = dataclasses.replace(spec, preprocess=spec.preprocess_for(options.fp32.input_size))
    resolve_opset(options.fp32.exporter, options.fp32.opset)
    return spec


def preflight(options: ExportOptions) -> ExportPlan:
    """Run every model-free check of ``options``; ``UsageError``/``InputError`` on the first problem."""
    spec = check_values(options)
    if options.fp32_from is not None and not Path(options.fp32_from).is_file():
        raise InputError(f"FP32 model {options.fp32_from} does not exist", hint="export the FP32 model first")
    if options.fp32_from is not None:
        check_fp32_source(Path(options.fp32_from), spec)
    for flag, folder in (("--calib-data", options.calibration.data if options.precision == "int8" else None),
                         ("--eval-data", options.verify.eval_data if options.verify is not None else None)):
        if folder is not None and not Path(folder).is_dir():
            raise InputError(f"{flag} {folder} is not a folder", hint="pass the folder holding your ImageNet images")
    engine_recipe_checked = options.precision == "int8" and options.build_engine
    if engine_recipe_checked:  # a named backend and a recipe it cannot take: refused before its availability even
        check_engine_recipe(options.backend, options.recipe, options.calibration.targets)
    backend, reason = resolve_backend(options.backend, options.precision)
    if engine_recipe_checked:  # what auto chose, too
        check_engine_recipe(backend.name, options.recipe, options.calibration.targets)
    recipe = resolve_recipe(options.recipe, backend.name)
    targets = int8_targets(recipe, options.calibration.targets) if options.precision == "int8" else {}
    check_weights(options.weights)
    calibration = plan_calibration(options, targets) if options.precision == "int8" else None
    if options.calibration.cache_dir is not None and options.precision == "int8":
        check_writable_dir(Path(options.calibration.cache_dir), "--cache-dir")
    build_options = dataclasses.replace(options.engine or BuildOptions(), precision=options.precision)
    eval_data = None
    if options.verify is not None:
        eval_data = options.verify.eval_data or default_eval_data(options.calibration)
        check_verification(spec, options, eval_data, calibration)
    fallback = ("fp32", "default")
    if options.mixed_precision.enabled:
        fallback = resolve_fallback_precision(backend.name, options.mixed_precision.fallback_precision)
    return ExportPlan(spec, options.precision, backend, reason, recipe, targets, calibration, eval_data, build_options,
                      fallback)


def check_fp32_source(source: Path, spec: ModelSpec) -> None:
    """``--fp32-from`` must be an FP32 export of the same model at the same input size (its own metadata says)."""
    try:
        meta = read_metadata(source)
    except Exception as exc:  # noqa: BLE001 - onnx raises several kinds for a file that is not ONNX
        raise InputError(f"--fp32-from {source} is not a readable ONNX model ({exc})",
                         hint="pass the model.onnx of an earlier export") from None
    found = (meta.get("model_name"), (meta.get("preprocess") or {}).get("input_size"), meta.get("precision"))
    wanted = (spec.name, spec.preprocess.input_size, "fp32")
    if found != wanted:
        raise InputError(
            f"--fp32-from {source} is {found[0]} at {found[1]} px ({found[2]}), not {wanted[0]} at {wanted[1]} px (fp32)",
            hint="pass the model.onnx of an FP32 export of the same model and --input-size",
        )


def resolve_recipe(recipe: str, backend: str) -> str:
    """``--recipe`` as given, or the backend's default INT8 recipe for ``auto``."""
    return default_recipe(backend) if recipe == AUTO else recipe


def int8_targets(recipe: str, backends: tuple[str, ...]) -> dict[str, str]:
    """Recipe -> INT8 artifact name: the export's own recipe is ``model.int8.onnx``; each target backend's default
    recipe gets ``model.int8.<recipe>.onnx`` (backends sharing a recipe share its artifact)."""
    names = {recipe: artifact_name("int8")}
    for backend in backends:
        target = default_recipe(backend)
        names.setdefault(target, artifact_name("int8", target))
    return names


def int8_method(calib: CalibrationOptions, recipes: list[str]) -> str:
    """The calibration method: the one asked for, else one that serves every recipe (statistics computed once)."""
    if calib.method != AUTO:
        return calib.method
    return shared_method([get_recipe(name, calib.keep_grouped_float) for name in recipes])


def default_eval_data(calib: CalibrationOptions) -> Path | None:
    """An ImageNet root given for calibration (train/) also holds the evaluation split (val/)."""
    if calib.data is not None and calib.labels_file is None and (Path(calib.data) / "val").is_dir():
        return Path(calib.data)
    return None


def check_weights(weights: str) -> None:
    """A weights path must exist and look like a checkpoint from its first bytes (the zoo names and ``random``
    are checked when the model is built)."""
    if weights in ("pretrained", "random"):
        return
    path = Path(weights).expanduser()
    if not path.is_file():
        raise WeightsError(f"checkpoint not found: {weights}",
                           hint="check the path passed to --weights, or use --weights pretrained / random")
    problem = checkpoint_problem(path)
    if problem is not None:
        raise WeightsError(f"{weights} is not a checkpoint: {problem}",
                           hint="pass a state dict saved with torch.save(model.state_dict(), path) or safetensors, "
                                "or --weights pretrained / random")


def check_writable_dir(path: Path, flag: str) -> None:
    """``path`` is a folder this process can write, or can be created as one."""
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise InputError(f"{flag} {path} cannot be written", hint=f"pass a writable folder to {flag}")


def plan_calibration(options: ExportOptions, targets: dict[str, str]) -> CalibrationPlan:
    """Scan the folder once (or re-use a manifest) and pin the calibration subset and, for every INT8 export, its
    tuning slice (held-out images for mixed precision); check the images can be read and, with an accuracy
    target, that tuning images are left."""
    calib, mixed = options.calibration, options.mixed_precision
    assert calib.data is not None  # ExportOptions guarantees it for INT8
    scanned: list[ScanResult] = []

    def scan() -> ScanResult:
        if not scanned:
            scanned.append(scan_images(calib.data, calib.labels_file, split="train",
                                       min_label_coverage=calib.min_label_coverage))
        return scanned[0]

    if calib.manifest is not None:
        manifest = Manifest.read(calib.manifest)
        root = Path(calib.data).expanduser().resolve()
        if manifest.split and (root / manifest.split).is_dir():
            root = root / manifest.split
        records = manifest.resolve(root)
        manifest = dataclasses.replace(manifest, root=str(root))  # where its images are on this machine
        description = f"{len(records)} images from manifest {calib.manifest}"
        if not manifest.tuning:
            manifest = with_tuning(manifest, scan(), mixed.tune_size)
    else:
        found = scan()
        records = select_subset(found.records, calib.size, calib.seed)
        manifest = Manifest.from_records(records, root=found.root, layout=found.layout, seed=calib.seed, split=found.split)
        description = found.describe()
        manifest = with_tuning(manifest, found, mixed.tune_size)
    labelled = all(entry.label is not None for entry in manifest.tuning)
    if mixed.enabled:
        check_tuning(manifest, labelled, options)
    unreadable = probe_images(records, decode=calib.strict, workers=calib.workers)
    if unreadable and (calib.strict or len(unreadable) == len(records)):
        names = ", ".join(f"{name} ({reason})" for name, reason in unreadable[:5])
        more = f" and {len(unreadable) - 5} more" if len(unreadable) > 5 else ""
        what = "any calibration image" if len(unreadable) == len(records) else f"{len(unreadable)} of {len(records)} calibration images"
        raise InputError(f"cannot read {what}: {names}{more}",
                         hint="remove or replace those files" + (", or drop --strict to skip them" if calib.strict else ""))
    return CalibrationPlan(manifest, records, description, int8_method(calib, list(targets)), labelled, unreadable)


def check_tuning(manifest: Manifest, labelled: bool, options: ExportOptions) -> None:
    """An accuracy target needs tuning images beyond the calibration subset (labelled ones for a top-1 target)."""
    if not manifest.tuning:
        raise UsageError(
            f"no images left for tuning: the calibration subset takes all {len(manifest.entries)} images of {manifest.root}",
            hint="lower --calib-size so that held-out images remain for the accuracy target (--tune-size of them are used)",
        )
    targets = options.mixed_precision.targets
    if targets is not None and targets.top1_drop_pp is not None and not labelled:
        raise UsageError("--target-top1-drop needs labelled tuning images", hint="use --target-cosine or --target-agreement")


def with_tuning(manifest: Manifest, scan: ScanResult, tune_size: int) -> Manifest:
    """The manifest with a tuning slice: the next images of the same stratified order, never calibration ones."""
    held_out = [record for record in scan.records if record.relpath not in manifest.relpaths]
    if not held_out or tune_size <= 0:
        return manifest
    return manifest.with_tuning(select_subset(held_out, tune_size, manifest.seed))


def check_verification(spec: ModelSpec, options: ExportOptions, eval_data: Path | None,
                       calibration: CalibrationPlan | None) -> None:
    """Gates file, JUnit path and the evaluation subset (labels coverage, readable, disjoint from calibration)."""
    verify = options.verify
    assert verify is not None
    load_gates(spec.name, options.precision, verify.thresholds, verify.gates_file, comparing=verify.compare_to is not None)
    if verify.compare_to is not None:  # typed up front: a bad file is exit 2 before the export, not after it
        load_earlier_run(verify.compare_to)
    if verify.junit is not None and Path(verify.junit).is_dir():
        raise UsageError(f"--junit {verify.junit} is a folder", hint="pass a file name, e.g. --junit out/junit.xml")
    if eval_data is None:
        return
    eval_set = load_eval_set(eval_data, verify.labels_file, verify.eval_size, verify.seed, spec.preprocess,
                             calibration.manifest if calibration else None, verify.random_eval_size,
                             verify.min_label_coverage)
    unreadable = probe_images(eval_set.records, decode=False)
    if eval_set.records and len(unreadable) == len(eval_set.records):
        names = ", ".join(f"{name} ({reason})" for name, reason in unreadable[:3])
        raise InputError(f"cannot read any evaluation image: {names}", hint="check --eval-data")
