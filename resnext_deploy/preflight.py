"""Every check of an export command that needs no model, run before any heavy work.

``pipeline.validate`` checks the values (names, the opset range); this module checks what needs
the disk: a bad command (an empty or unreadable image folder, a calibration manifest that does
not match its images, evaluation images that are also calibration images, a labels file that
covers too few images, a bad batch range, a broken gates file) fails in seconds,
before the FP32 export, and writes nothing. What it finds is handed to the pipeline, so nothing
is scanned or hashed twice.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from resnext_deploy.errors import InputError, UsageError

if TYPE_CHECKING:
    from resnext_deploy.data.datasets import ImageRecord
    from resnext_deploy.data.manifest import Manifest
    from resnext_deploy.pipeline import CalibrationOptions, ExportOptions
    from resnext_deploy.zoo import ModelSpec


@dataclass
class CalibrationPlan:
    """The calibration subset, pinned before the export starts."""

    manifest: Manifest
    records: list[ImageRecord]
    description: str
    unreadable: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class Checked:
    """What the checks resolved: the calibration subset, the evaluation folder, the engine build options."""

    calibration: CalibrationPlan | None
    eval_data: Path | None
    build_options: Any


def check_export(spec: ModelSpec, options: ExportOptions, default_eval_data: Path | None) -> Checked:
    """Run every model-free check of ``options``; ``UsageError``/``InputError`` on the first problem."""
    from resnext_deploy.engines import BuildOptions

    check_weights(options.weights)
    build_options = dataclasses.replace(options.engine or BuildOptions(), precision=options.precision)
    calibration = (plan_calibration(options.calibration, options.mixed_precision.tune_size)
                   if options.precision == "int8" else None)
    if options.calibration.cache_dir is not None and options.precision == "int8":
        check_writable_dir(Path(options.calibration.cache_dir), "--cache-dir")
    eval_data = None
    if options.verify is not None:
        eval_data = options.verify.eval_data or default_eval_data
        check_verification(spec, options, eval_data, calibration)
    return Checked(calibration, eval_data, build_options)


def check_weights(weights: str) -> None:
    """A weights path must exist (the zoo names and ``random`` are checked when the model is built)."""
    from resnext_deploy.errors import WeightsError

    if weights not in ("pretrained", "random") and not Path(weights).expanduser().is_file():
        raise WeightsError(f"checkpoint not found: {weights}",
                           hint="check the path passed to --weights, or use --weights pretrained / random")


def check_writable_dir(path: Path, flag: str) -> None:
    """``path`` is a folder this process can write, or can be created as one."""
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise InputError(f"{flag} {path} cannot be written", hint=f"pass a writable folder to {flag}")


def plan_calibration(calib: CalibrationOptions, tune_size: int = 0) -> CalibrationPlan:
    """Scan (or re-use through its manifest) and pin the calibration subset and its tuning slice (``tune_size``
    held-out images for mixed precision); check the subset's images can be read."""
    from resnext_deploy.data.datasets import scan_images
    from resnext_deploy.data.manifest import Manifest, select_subset
    from resnext_deploy.data.preprocess import probe_images

    assert calib.data is not None  # pipeline.validate() guarantees it

    def scan() -> Any:
        return scan_images(calib.data, calib.labels_file, split="train", min_label_coverage=calib.min_label_coverage)

    if calib.manifest is not None:
        manifest = Manifest.read(calib.manifest)
        root = Path(calib.data).expanduser().resolve()
        if manifest.split and (root / manifest.split).is_dir():
            root = root / manifest.split
        records = manifest.resolve(root)
        manifest = dataclasses.replace(manifest, root=str(root))  # where its images are on this machine
        description = f"{len(records)} images from manifest {calib.manifest}"
        if tune_size and not manifest.tuning:
            manifest = with_tuning(manifest, scan(), tune_size)
    else:
        found = scan()
        records = select_subset(found.records, calib.size, calib.seed)
        manifest = Manifest.from_records(records, root=found.root, layout=found.layout, seed=calib.seed, split=found.split)
        description = found.describe()
        if tune_size:
            manifest = with_tuning(manifest, found, tune_size)
    unreadable = probe_images(records, decode=calib.strict, workers=calib.workers)
    if unreadable and (calib.strict or len(unreadable) == len(records)):
        names = ", ".join(f"{name} ({reason})" for name, reason in unreadable[:5])
        more = f" and {len(unreadable) - 5} more" if len(unreadable) > 5 else ""
        what = "any calibration image" if len(unreadable) == len(records) else f"{len(unreadable)} of {len(records)} calibration images"
        raise InputError(f"cannot read {what}: {names}{more}",
                         hint="remove or replace those files" + (", or drop --strict to skip them" if calib.strict else ""))
    return CalibrationPlan(manifest, records, description, unreadable)


def with_tuning(manifest: Manifest, scan: Any, tune_size: int) -> Manifest:
    """The manifest with a tuning slice: the next images of the same stratified order, never calibration ones."""
    from resnext_deploy.data.manifest import select_subset

    held_out = [record for record in scan.records if record.relpath not in manifest.relpaths]
    if not held_out:
        return manifest
    return manifest.with_tuning(select_subset(held_out, tune_size, manifest.seed))


def check_verification(spec: ModelSpec, options: ExportOptions, eval_data: Path | None,
                       calibration: CalibrationPlan | None) -> None:
    """Gates file, JUnit path and the evaluation subset (labels coverage, readable, disjoint from calibration)."""
    from resnext_deploy.data.preprocess import probe_images
    from resnext_deploy.verification.accuracy import load_eval_set
    from resnext_deploy.verification.gates import load_gates

    verify = options.verify
    load_gates(spec.name, options.precision, verify.thresholds, verify.gates_file)
    if verify.junit is not None and Path(verify.junit).is_dir():
        raise UsageError(f"--junit {verify.junit} is a folder", hint="pass a file name, e.g. --junit out/junit.xml")
    if eval_data is None:
        return
    eval_set = load_eval_set(eval_data, verify.labels_file, verify.eval_size, verify.seed, spec.preprocess,
                             data.manifest if calibration else None, verify.random_eval_size,
                             verify.min_label_coverage)
    unreadable = probe_images(eval_set.records, decode=False)
    if eval_set.records and len(unreadable) == len(eval_set.records):
        names = ", ".join(f"{name} ({reason})" for name, reason in unreadable[:3])
        raise InputError(f"cannot read any evaluation image: {names}", hint="check --eval-data")
