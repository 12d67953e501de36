"""run_sweep: the plan's cells, what is left of them, a scheduler (local pool or Ray), then one report.

Finished steps are recognised by the record they leave in their report.json (the fingerprint of
every setting that shapes their numbers), so an interrupted sweep resumes where it stopped; gates
and ``--compare-to`` are checked again on the kept cells' numbers, without measuring again.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from resnext_deploy import console, environment, machine
from resnext_deploy.data.datasets import scan_images
from resnext_deploy.data.manifest import Manifest, select_subset
from resnext_deploy.engines import BuildOptions
from resnext_deploy.environment import toolchain_version
from resnext_deploy.errors import CellError, DeployError, GateFailed, UsageError
from resnext_deploy.export import CalibrationOptions, ExportOptions, Fp32Options
from resnext_deploy.export.preflight import check_values, check_weights, default_eval_data
from resnext_deploy.files import sha256_file, write_json
from resnext_deploy.layout import (
    CALIBRATION_MANIFEST,
    FP32_NAME,
    PARETO_PNG_NAME,
    SWEEP_CACHE_DIR,
    SWEEP_FP32_DIR,
    SWEEP_JSON_NAME,
    SWEEP_MD_NAME,
    sweep_cell_dir,
)
from resnext_deploy.outdir import prepare_output_dir
from resnext_deploy.report import Report, read_report
from resnext_deploy.sweep import outputs
from resnext_deploy.sweep.cells import CellJob, Fp32Job
from resnext_deploy.sweep.local import LocalPool
from resnext_deploy.sweep.plan import Plan
from resnext_deploy.sweep.ray_cluster import RayCluster, shared_paths
from resnext_deploy.sweep.schedule import Scheduler, Work
from resnext_deploy.verification.accuracy import load_eval_set
from resnext_deploy.verification.compare import load_earlier_run
from resnext_deploy.verification.gates import load_gates
from resnext_deploy.verification.options import VerifyOptions
from resnext_deploy.verification.run import regate_directory
from resnext_deploy.verification.shards import shard_bounds
from resnext_deploy.zoo import get_model_spec

logger = logging.getLogger(__name__)

SCHEMA = "resnext-deploy/sweep"
SCHEMA_VERSION = 1
SWEEP_BATCH_SIZES = (1, 8)  # sweep.md shows p50 at batch 1 and images/s at batch 8


def _default_verify() -> VerifyOptions:
    return VerifyOptions(batch_sizes=SWEEP_BATCH_SIZES, iterations=20)


@dataclass
class SweepOptions:
    """A sweep: the plan, where it writes, the export's calibration, evaluation and gate settings, and where it runs."""

    plan: Plan
    output: Path = Path("out/sweep")
    calibration: CalibrationOptions = field(default_factory=CalibrationOptions)
    verify: VerifyOptions = field(default_factory=_default_verify)
    recipe: str = "auto"
    fp32: Fp32Options = field(default_factory=Fp32Options)
    engine: Any = None  # engines.BuildOptions for every cell [default: the engines' defaults]
    workers: int | None = None  # local pool processes [default: every usable core]
    ray: str | None = None  # "auto" or a cluster address; None: the local pool
    shards: int | None = None  # evaluation shards per cell [default: one per worker or Ray CPU]
    timeout_s: float | None = None  # Ray: cells unfinished after this are cancelled (and redone on resume)
    force: bool = False  # redo finished steps too


@dataclass
class SweepOutcome:
    """sweep.json's content and where it went; true when every cell ran and passed its gates."""

    directory: Path
    sweep: dict[str, Any]

    def __bool__(self) -> bool:
        return not self.sweep["failed_cells"] and not self.sweep["error_cells"]

    def raise_for_cells(self) -> None:
        """``CellError`` (exit 2) naming broken cells, else ``GateFailed`` (exit 1) naming failing cells and gates."""
        md = self.directory / SWEEP_MD_NAME
        errors = [c for c in self.sweep["cells"] if c["status"] == "error"]
        if errors:
            raise CellError(f"{len(errors)} cell(s) could not run: " + "; ".join(f"{c['cell']}: {c['error']}" for c in errors),
                            hint=f"fix the cause and run the sweep again (finished cells are kept); see {md}")
        failed = [c for c in self.sweep["cells"] if c["status"] == "failed"]
        if failed:
            raise GateFailed(f"{len(failed)} cell(s) failed their gates: "
                             + "; ".join(f"{c['cell']} ({', '.join(c['failed_gates'])})" for c in failed), hint=f"see {md}")


def _digest(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode("utf-8")).hexdigest()[:24]


def _weights_identity(weights: str) -> Any:
    path = Path(weights).expanduser()
    if weights in ("pretrained", "random") or not path.is_file():
        return weights
    stat = path.stat()
    return {"path": str(path.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _validate(options: SweepOptions) -> None:
    """Every check that needs no heavy work: counts, each cell's export options, the gates and --compare-to files."""
    for name, value in (("--workers", options.workers), ("--shards", options.shards), ("--timeout", options.timeout_s)):
        if value is not None and value <= 0:
            raise UsageError(f"{name} must be positive, got {value}")
    if options.timeout_s is not None and options.ray is None:
        raise UsageError("--timeout applies to --ray sweeps", hint="leave it out, or add --ray auto|ADDRESS")
    comparing = options.verify.compare_to is not None
    for model in options.plan.models:  # a checkpoint that is no checkpoint: exit 2 now, not inside the first cell
        check_weights(options.plan.weights_for(model))
    for model, precision, backend in options.plan.cells():
        check_values(ExportOptions(model=model, precision=precision, backend=backend, recipe=options.recipe,
                                   calibration=options.calibration, verify=options.verify, fp32=options.fp32))
        load_gates(model, precision, options.verify.thresholds, options.verify.gates_file, comparing=comparing)
    if comparing:
        load_earlier_run(options.verify.compare_to)


def make_scheduler(options: SweepOptions) -> Scheduler:
    """The local pool, or a connection to Ray (exit 2 in seconds when Ray is missing or unreachable)."""
    if options.ray is None:

        return LocalPool(options.workers)

    return RayCluster(options.ray, options.timeout_s)


def _shared_manifest(calib: CalibrationOptions, output: Path) -> tuple[CalibrationOptions, str | None]:
    """One calibration subset for every INT8 cell: the given manifest, or one picked now; (options, its sha256)."""

    if calib.data is None:
        return calib, None
    if calib.manifest is not None:
        return calib, Manifest.read(calib.manifest).sha256

    scan = scan_images(calib.data, calib.labels_file, split="train")
    records = select_subset(scan.records, calib.size, calib.seed)
    manifest = Manifest.from_records(records, root=scan.root, layout=scan.layout, seed=calib.seed, split=scan.split)
    path = output / CALIBRATION_MANIFEST
    manifest.write(path)
    return dataclasses.replace(calib, manifest=path), manifest.sha256


def _finished(directory: Path, fingerprint: str, verified: bool) -> Report | None:
    """The report of a step finished with these settings, else None."""

    try:
        report = read_report(directory)
    except DeployError:
        return None
    if (report.sweep or {}).get("fingerprint") != fingerprint:
        return None
    if verified:
        return report if report.verification is not None and report.gates is not None else None
    onnx = directory / FP32_NAME
    recorded = report.export.sha256 if report.export is not None else None
    return report if onnx.is_file() and sha256_file(onnx) == recorded else None


@dataclass
class _Prepared:
    verify: VerifyOptions
    calibration: CalibrationOptions
    eval_source: dict[str, Any]
    records: list[Any]
    fp32_jobs: dict[str, Fp32Job]
    cell_jobs: list[CellJob]


def _prepare(options: SweepOptions, output: Path, threads: int) -> _Prepared:
    """Pin the calibration subset and the evaluation subset, and describe every step with its fingerprint."""

    plan = options.plan
    calib = options.calibration
    if calib.cache_dir is None:
        calib = dataclasses.replace(calib, cache_dir=output / SWEEP_CACHE_DIR)
    manifest_sha = None
    if "int8" in plan.precisions:
        calib, manifest_sha = _shared_manifest(calib, output)
    verify = options.verify
    if verify.eval_data is None:
        verify = dataclasses.replace(verify, eval_data=default_eval_data(calib))
    verify = dataclasses.replace(verify, junit=None, threads=threads, progress=False)
    specs = {model: get_model_spec(model) for model in plan.models}
    eval_set = load_eval_set(verify.eval_data, verify.labels_file, verify.eval_size, verify.seed,
                             specs[plan.models[0]].preprocess, calib.manifest, verify.random_eval_size)
    toolchain = toolchain_version()
    fp32_jobs = {}
    for model, spec in specs.items():
        weights = plan.weights_for(model)
        fingerprint = _digest({"spec": spec.to_dict(), "weights": _weights_identity(weights),
                               "fp32": dataclasses.asdict(options.fp32), "toolchain": toolchain})
        fp32_jobs[model] = Fp32Job(spec, weights, output / model / SWEEP_FP32_DIR, options.fp32, fingerprint)
    measured = {k: getattr(verify, k) for k in ("eval_data", "labels_file", "eval_size", "seed", "baseline", "batch_sizes",
                                                "iterations", "warmup_ms", "duration", "latency", "eval_batch_size",
                                                "random_eval_size")}
    engine = dataclasses.replace(options.engine or BuildOptions(), threads=threads)
    cell_jobs = []
    for model, precision, backend in plan.cells():
        fp32 = fp32_jobs[model]
        calibration = ({k: getattr(calib, k) for k in ("data", "labels_file", "size", "seed", "method", "strict",
                                                       "keep_grouped_float")} | {"manifest": manifest_sha}
                       if precision == "int8" else None)
        fingerprint = _digest({"fp32": fp32.fingerprint, "precision": precision, "backend": backend,
                               "recipe": options.recipe, "calibration": calibration, "engine": engine.to_dict(),
                               "verify": measured, "latency_threads": threads, "toolchain": toolchain})
        cell_jobs.append(CellJob(
            key=sweep_cell_dir(model, precision, backend), spec=specs[model], precision=precision, backend=backend,
            directory=output / sweep_cell_dir(model, precision, backend), fp32=fp32.onnx, recipe=options.recipe,
            calibration=calib, verify=verify, fingerprint=fingerprint,
            engine=engine, input_size=options.fp32.input_size,
        ))
    return _Prepared(verify, calib, eval_set.source, list(eval_set.records), fp32_jobs, cell_jobs)


def _message(error: BaseException) -> str:
    if isinstance(error, DeployError):
        return error.message + (f" ({error.hint})" if error.hint else "")
    return f"{type(error).__name__}: {error}"


def _host(record: dict[str, Any] | None, step: str | None = None) -> str:
    ran_on = (record or {}).get("ran_on") or {}
    ran_on = ran_on.get(step, ran_on) if step else ran_on
    return str(ran_on.get("host", "?"))


def run_sweep(options: SweepOptions, command: list[str] | None = None) -> SweepOutcome:
    """Run (or resume) the sweep; write sweep.json, sweep.md and pareto.png; call ``raise_for_cells`` for the exit code."""

    started = time.perf_counter()
    _validate(options)
    output = Path(options.output).expanduser().resolve()
    scheduler = make_scheduler(options)
    try:
        threads = scheduler.latency_threads(options.verify.threads)
        prepare_output_dir(output, force=True, names=())
        prepared = _prepare(options, output, threads)
        weights = [Path(w) for w in options.plan.weights.values() if w not in ("pretrained", "random")]
        scheduler.check_paths(shared_paths(output, prepared.calibration.data, prepared.verify.eval_data, *weights))
        bounds = shard_bounds(len(prepared.records), prepared.verify.eval_batch_size, options.shards or scheduler.eval_slots())
        shards = [prepared.records[a:b] for a, b in bounds] if prepared.records else []
        work, kept = _unfinished(prepared, options.force)
        work.shards, work.latency_threads = shards, threads
        console.err.print(
            f"[dim]sweep: {len(prepared.cell_jobs)} cell(s), {len(kept)} finished earlier; "
            f"{len(work.fp32_jobs)} FP32 export(s) to do; evaluation in {max(len(shards), 1)} shard(s); "
            f"latency on {threads} core(s); on {scheduler.describe()['kind']}[/]")
        fp32_records, errors = _run(scheduler, work)
        scheduler_facts = scheduler.describe() | {"latency_threads": threads, "eval_shards": len(shards)}
    finally:
        scheduler.close()
    sweep = _collect(options, prepared, output, kept, fp32_records, errors, scheduler_facts, command)
    sweep["wall_s"] = round(time.perf_counter() - started, 3)
    return _write(output, sweep, options.verify.junit)


def _unfinished(prepared: _Prepared, force: bool) -> tuple[Work, set[str]]:
    """The FP32 exports and cells to (re)do, and the keys of the cells kept from an earlier run."""
    fp32_todo = [job for job in prepared.fp32_jobs.values() if force or _finished(job.directory, job.fingerprint, False) is None]
    redo_models = {job.spec.name for job in fp32_todo}
    kept = set()
    cells = []
    for job in prepared.cell_jobs:
        if not force and job.spec.name not in redo_models and _finished(job.directory, job.fingerprint, True) is not None:
            kept.add(job.key)
        else:
            cells.append(job)
    return Work(fp32_todo, cells), kept


def _run(scheduler: Scheduler, work: Work) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """Drive the scheduler, saying what finished where; FP32 records by model and error messages by cell."""
    fp32: dict[str, dict[str, Any]] = {}
    errors: dict[str, str] = {}
    for event in scheduler.run(work):
        if event.error is not None:
            logger.debug("%s %s failed", event.kind, event.name, exc_info=event.error)
            errors[event.name] = _message(event.error)
            console.warn(f"{event.name}: {errors[event.name]}")
        elif event.kind == "fp32":
            fp32[event.name] = event.record or {}
            console.err.print(f"[green]✓[/] FP32 export of {event.name} [dim]({fp32[event.name].get('seconds')}s on "
                              f"{_host(event.record)})[/]")
        else:
            console.err.print(f"[green]✓[/] {event.name} [dim](latency on {_host(event.record, 'latency')})[/]")
    return fp32, errors


def _collect(
    options: SweepOptions, prepared: _Prepared, output: Path, kept: set[str], fp32_records: dict[str, dict[str, Any]],
    errors: dict[str, str], scheduler_facts: dict[str, Any], command: list[str] | None,
) -> dict[str, Any]:
    """sweep.json's content: kept cells gated again (new thresholds, --compare-to), every cell's row, the front."""
    rows = []
    for job in prepared.cell_jobs:
        if job.key in errors or job.spec.name in errors:
            rows.append({"cell": job.key, "model": job.spec.name, "precision": job.precision, "backend": job.backend,
                         "directory": str(job.directory.relative_to(output)), "status": "error",
                         "error": errors.get(job.key) or errors[job.spec.name]})
            continue
        report = regate_directory(job.directory, job.verify).report if job.key in kept else read_report(job.directory)
        rows.append(outputs.cell_row(job.key, job.directory, output, report) | {"resumed": job.key in kept})
    fp32 = {}
    for model, job in prepared.fp32_jobs.items():
        record = fp32_records.get(model)
        fp32[model] = {"directory": str(job.directory.relative_to(output)), "exported_now": record is not None,
                       "seconds": (record or {}).get("seconds"), "ran_on": (record or {}).get("ran_on")}
    identity = {k: prepared.eval_source.get(k) for k in ("kind", "root", "layout", "split", "labels_file", "available",
                                                         "requested", "seed", "count", "labelled")}
    key, label = outputs.accuracy_axis([r for r in rows if r["status"] != "error"])
    return {
        "schema": SCHEMA, "schema_version": SCHEMA_VERSION,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "toolchain_version": environment.toolchain_version(), "command": command or [],
        "plan": options.plan.to_dict(), "scheduler": scheduler_facts, "evaluation": identity,
        "calibration_manifest": str(prepared.calibration.manifest) if prepared.calibration.manifest else None,
        "fp32": fp32, "cells": rows,
        "pareto_front": outputs.front_cells([r for r in rows if r["status"] != "error"]), "accuracy_axis": label,
        "failed_cells": [r["cell"] for r in rows if r["status"] == "failed"],
        "error_cells": [r["cell"] for r in rows if r["status"] == "error"],
        "environment": machine.describe(),
    }


def _write(output: Path, sweep: dict[str, Any], junit: Path | None) -> SweepOutcome:
    write_json(output / SWEEP_JSON_NAME, sweep)
    outputs.write_markdown(output, sweep)
    if junit is not None:
        outputs.write_junit(junit, sweep)
    try:
        if outputs.write_pareto_plot(output, [r for r in sweep["cells"] if r["status"] != "error"]) is None:
            (output / PARETO_PNG_NAME).unlink(missing_ok=True)  # untimed (--no-latency): an earlier plot would mislead
    except ImportError:
        console.warn("matplotlib is not installed; pareto.png was not written (pip install matplotlib)")
    return SweepOutcome(output, sweep)
