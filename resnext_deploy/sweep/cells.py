"""A sweep's work as picklable jobs and plain functions: the local pool and Ray tasks run the same code.

Every function reads and writes artifacts by path (the sweep directory, on storage every worker
sees) and returns small records; only evaluation logits travel back as values.
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from resnext_deploy import console
from resnext_deploy.environment import toolchain_version
from resnext_deploy.export import CalibrationOptions, ExportOptions, Fp32Options, run_export
from resnext_deploy.layout import FP32_NAME
from resnext_deploy.report import Report, read_report, write_report
from resnext_deploy.verification.options import VerifyOptions
from resnext_deploy.verification.run import verify_directory
from resnext_deploy.verification.shards import EvalLogits, ShardResult, eval_shard, where
from resnext_deploy.zoo import ModelSpec, get_model_spec, register_model


@dataclass(frozen=True)
class Fp32Job:
    """Export one model to FP32 ONNX, once for all of its cells."""

    spec: ModelSpec
    weights: str
    directory: Path
    settings: Fp32Options
    fingerprint: str

    @property
    def onnx(self) -> Path:
        return self.directory / FP32_NAME


@dataclass(frozen=True)
class CellJob:
    """One (model, precision, backend): its artifact made from the model's FP32 ONNX, evaluated, timed and gated."""

    key: str
    spec: ModelSpec
    precision: str
    backend: str
    directory: Path
    fp32: Path
    recipe: str
    calibration: CalibrationOptions
    verify: VerifyOptions
    fingerprint: str
    engine: Any = None  # engines.BuildOptions, threads = the latency threads
    input_size: int | None = None


def use_spec(spec: ModelSpec) -> None:
    """Make the driver's zoo entry known in this worker (models registered at run time, e.g. variants of your own)."""

    try:
        if get_model_spec(spec.name) == spec:
            return
    except Exception:  # noqa: BLE001 - unknown here: registered below
        pass
    register_model(spec)


def mark(directory: Path, record: dict[str, Any]) -> Report:
    """Add the sweep's record to ``directory``'s report.json (atomically): the step is finished."""

    report = read_report(directory)
    report.sweep = record
    write_report(directory, report)
    return report


def export_fp32(job: Fp32Job) -> dict[str, Any]:
    """Export ``job.spec`` to ``job.directory/model.onnx`` (no engine, no verification)."""

    use_spec(job.spec)
    started = time.perf_counter()
    shutil.rmtree(job.directory, ignore_errors=True)
    options = ExportOptions(model=job.spec.name, precision="fp32", weights=job.weights, output=job.directory,
                            fp32=job.settings, force=True, build_engine=False, verify=None)
    run_export(options, command=["sweep", "fp32", job.spec.name])
    record = {"step": "fp32", "fingerprint": job.fingerprint, "seconds": round(time.perf_counter() - started, 3),
              "ran_on": where()}
    report = mark(job.directory, record)
    assert report.export is not None
    return record | {"sha256": report.export.sha256}


def build_cell(job: CellJob, *after: Any) -> dict[str, Any]:
    """Make the cell's precision artifact and engine from the model's FP32 ONNX (``after``: steps to wait for)."""

    use_spec(job.spec)
    started = time.perf_counter()
    shutil.rmtree(job.directory, ignore_errors=True)
    options = ExportOptions(
        model=job.spec.name, precision=job.precision, backend=job.backend, recipe=job.recipe, output=job.directory,
        fp32=Fp32Options(input_size=job.input_size), force=True, calibration=job.calibration, engine=job.engine, verify=None,
        fp32_from=job.fp32,
    )
    _, report = run_export(options, command=["sweep", job.key])
    quantization = report.quantization
    return {"seconds": round(time.perf_counter() - started, 3), "ran_on": where(),
            "stats_cache_hit": quantization.stats_cache_hit if quantization is not None else None,
            "fp32_reused_from": str(job.fp32)}


def evaluate_shard(job: CellJob, index: int, records: list[Any], threads: int, *after: Any) -> ShardResult:
    """Decode and run one evaluation shard of the cell with ``threads`` inference threads."""

    use_spec(job.spec)
    return eval_shard(job.directory, records, index, job.verify.eval_batch_size, job.verify.baseline,
                      job.backend, threads)


def finish_cell(job: CellJob, threads: int, build: dict[str, Any], *shards: ShardResult) -> dict[str, Any]:
    """Time latency on ``threads`` cores, gate, and write the cell's reports from the merged shards."""

    use_spec(job.spec)
    started = time.perf_counter()
    options = dataclasses.replace(job.verify, threads=threads, progress=False)
    verify_directory(job.directory, options, EvalLogits(list(shards)) if shards else None)
    record = {
        "step": "cell", "cell": job.key, "fingerprint": job.fingerprint,
        "ran_on": {"build": build["ran_on"], "shards": [s.ran_on for s in shards],
                   "latency": where() | {"cpus": threads}},
        "seconds": {"build": build["seconds"], "finish": round(time.perf_counter() - started, 3)},
        "fp32_reused_from": build["fp32_reused_from"], "stats_cache_hit": build["stats_cache_hit"],
    }
    mark(job.directory, record)
    return record


def quiet() -> None:
    """Silence the stage lines of a worker process: the driver reports each finished step."""

    if console.verbosity() < 1:
        console.err.quiet = True


def run_quietly(function: Any, *args: Any) -> Any:
    """Call ``function(*args)`` in a worker with its stage lines silenced (Ray tasks)."""
    quiet()
    return function(*args)


def node_facts(paths: list[str]) -> dict[str, Any]:
    """Which of ``paths`` this node cannot see, and its toolchain version: a sweep's artifacts travel by path."""

    return {"ran_on": where(), "version": toolchain_version(), "missing": [p for p in paths if not Path(p).exists()]}
