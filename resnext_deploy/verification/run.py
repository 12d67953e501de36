"""verify_directory: read an export directory, measure target vs baseline, gate, write every output."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from resnext_deploy import console, environment, machine, outdir
from resnext_deploy.calibration.baseline_cache import BaselineKey, BaselineLogits
from resnext_deploy.engines import BuildOptions
from resnext_deploy.errors import GateFailed, InputError, UsageError
from resnext_deploy.layout import CALIBRATION_MANIFEST, FP32_NAME, PRECISIONS
from resnext_deploy.metadata import check_metadata, read_metadata
from resnext_deploy.outdir import artifact_path, check_artifacts
from resnext_deploy.report import Report, read_report, write_report
from resnext_deploy.verification import outputs
from resnext_deploy.verification.accuracy import (
    NO_LABELS_NOTE,
    compare_logits,
    eval_batch_size,
    eval_images_sha256,
    eval_logits,
    load_eval_set,
)
from resnext_deploy.verification.bare import bare_engine_report, bare_report, default_output, prepare_output
from resnext_deploy.verification.compare import load_earlier_run
from resnext_deploy.verification.gates import GateResult, evaluate_gates, gates_record, load_gates, target_gates
from resnext_deploy.verification.held_out import held_out_check
from resnext_deploy.verification.latency import LatencyPlan, measure_latency
from resnext_deploy.verification.options import VerifyOptions
from resnext_deploy.verification.runners import onnx_baseline, target_side, torch_baseline
from resnext_deploy.verification.shards import EvalLogits
from resnext_deploy.zoo import PreprocessConfig


@dataclass
class VerifyOutcome:
    """The gate results and where the outputs went; true when every gate passed.

    A skipped gate (its metric was not measured) does not fail, unless ``require_gates`` is set.
    """

    directory: Path
    report: Report
    gates: list[GateResult]
    outputs: dict[str, Path] = field(default_factory=dict)
    require_gates: bool = False

    @property
    def failed(self) -> list[GateResult]:
        return [gate for gate in self.gates if gate.failed or (self.require_gates and gate.status == "skipped")]

    @property
    def skipped(self) -> list[GateResult]:
        return [gate for gate in self.gates if gate.status == "skipped"]

    def __bool__(self) -> bool:
        return not self.failed

    def raise_for_gates(self) -> None:
        """``GateFailed`` (exit 1) naming each failing gate and by how much; nothing when all pass."""
        if self.failed:
            required = " (--require-gates: a skipped gate fails)" if any(g.status == "skipped" for g in self.failed) else ""
            raise GateFailed(
                f"{len(self.failed)} gate(s) failed{required}: " + "; ".join(gate.describe() for gate in self.failed),
                hint=f"see {self.outputs.get('report_md', self.directory / 'report.md')}",
            )


def _preprocess(path: Path, report: Report) -> PreprocessConfig:
    """The artifact's own preprocessing; for a bare graph without one, the zoo entry's."""
    typed = check_metadata(read_metadata(path), path.name)
    if typed.preprocess is not None:
        return PreprocessConfig.from_dict(typed.preprocess.model_dump())
    if (report.source or {}).get("kind") == "onnx" and report.model is not None and report.model.preprocess:
        return PreprocessConfig.from_dict(report.model.preprocess)
    raise InputError(f"{path} carries no preprocess metadata", hint="re-export it with `resnext-deploy export`")


def _open_directory(directory: Path) -> Report:
    directory = Path(directory)
    if not directory.is_dir():
        raise InputError(f"{directory} is not a directory, an .onnx or an engine file",
                         hint="pass the output directory of `resnext-deploy export`, an ONNX file or a built engine")
    report = read_report(directory)
    for key in ("model", "precision"):
        if getattr(report, key) is None:
            raise InputError(f"{directory / 'report.json'} has no {key!r}", hint="re-run `resnext-deploy export`")
    if report.precision not in PRECISIONS:
        raise InputError(f"{directory / 'report.json'}: 'precision' is malformed", hint="re-run `resnext-deploy export`")
    return report


def _open_target(path: Path, options: VerifyOptions) -> tuple[Path, Report, list[str]]:
    """(outputs folder, report, notes) of an export directory or of a bare ``.onnx`` file."""
    if path.is_file() and path.suffix == ".onnx":
        report, notes = bare_report(path, options.reference, options.model)
        return prepare_output(options.output or default_output(path)), report, notes
    if path.is_file():
        report, notes = bare_engine_report(path, options.reference, options.model, options.backend)
        return prepare_output(options.output or default_output(path)), report, notes
    if options.reference is not None or options.model is not None:
        raise UsageError("--reference and --model apply to a bare .onnx file only",
                         hint="an export directory's report.json names its FP32 model")
    return path, _open_directory(path), []


def verify_directory(directory: Path, options: VerifyOptions, logits: EvalLogits | None = None, *,
                     lock: bool = True) -> VerifyOutcome:
    """Measure the export in ``directory`` against its FP32 baseline, check the gates, write all outputs.

    ``logits``: the evaluation already run in shards elsewhere (a sweep), used instead of evaluating here.
    Returns a truthy outcome when all gates pass; call ``outcome.raise_for_gates()`` for exit code 1.
    An export directory is locked against a concurrent run while its reports are rewritten
    (``lock=False``: the caller holds it).
    """
    import contextlib

    directory = Path(directory)
    lock = lock and directory.is_dir()
    with outdir.locked(directory) if lock else contextlib.nullcontext():
        if lock:
            outdir.remove_leftovers(directory)
        return _verify(directory, options, logits)


def _verify(directory: Path, options: VerifyOptions, logits: EvalLogits | None) -> VerifyOutcome:
    bare = directory.is_file()
    directory, report, bare_notes = _open_target(directory, options)
    assert report.model is not None and report.precision is not None
    model, precision = report.model.name, report.precision
    gates = load_gates(model, precision, options.thresholds, options.gates_file, comparing=options.compare_to is not None)
    earlier_run = load_earlier_run(options.compare_to) if options.compare_to is not None else None
    artifacts = report.artifacts
    if not bare:  # names from report.json stay inside the directory and still hold what the export wrote
        check_artifacts(directory, report)
    locate = (lambda name, what: directory / name) if bare else (lambda name, what: artifact_path(directory, name, what))
    target_onnx = locate(artifacts.named(precision) or artifacts.fp32 or FP32_NAME, f"{precision} artifact")
    if not target_onnx.is_file():
        raise InputError(f"{target_onnx} is missing from the export directory", hint="re-run `resnext-deploy export`")
    cfg = _preprocess(target_onnx, report)
    manifest_name = artifacts.calibration_manifest or CALIBRATION_MANIFEST
    manifest = locate(manifest_name, "calibration manifest")
    eval_set = load_eval_set(options.eval_data, options.labels_file, options.eval_size, options.seed, cfg,
                             manifest, options.random_eval_size, options.min_label_coverage)
    if eval_set.source.get("checked_disjoint_from"):
        eval_set.source["checked_disjoint_from"] = manifest_name  # relative: the directory may move

    baseline = (torch_baseline(report, cfg.input_size, options.threads) if options.baseline == "torch"
                else onnx_baseline(directory, report, options.threads, options.baseline_providers))
    target = target_side(directory, report, options.backend, options.threads)
    cached = _cached_baseline(directory, report, eval_set, cfg, options) if logits is None else None
    latency: dict[str, Any] | None = None
    seconds: dict[str, float | None] = {}
    with baseline.runner as base_runner, target.runner as target_runner:
        started = time.perf_counter()
        batch_size = eval_batch_size(options.eval_batch_size, base_runner, target_runner)  # within an engine's profile
        reference, produced, labels = logits.for_set(eval_set) if logits is not None else eval_logits(
            eval_set, base_runner, target_runner, batch_size, options.progress, cached, seconds
        )
        console.err.print(f"[green]✓[/] accuracy on {len(reference)} images [dim]({time.perf_counter() - started:.1f}s)[/]")
        accuracy = compare_logits(reference, produced, labels)
        if options.measures_latency:
            plan = LatencyPlan(options.batch_sizes, options.duration, options.iterations, options.warmup_ms / 1000.0, options.seed)
            latency_started = time.perf_counter()
            latency = measure_latency(base_runner, target_runner, plan, progress=options.progress)
            seconds["latency"] = time.perf_counter() - latency_started
        eval_set.source["batch_size"] = batch_size
        target.description.update(_runner_facts(target_runner))
        baseline.description.update(_runner_facts(base_runner))
    if cached is not None:
        baseline.description["logits"] = cached.record()

    notes: list[str] = list(bare_notes)
    if eval_set.source["kind"] == "random":
        notes.append(eval_set.source["note"])
        console.warn(eval_set.source["note"])
    elif not accuracy["accuracy_measured"]:
        notes.append(NO_LABELS_NOTE)
        accuracy["accuracy_note"] = NO_LABELS_NOTE
    if eval_set.source["kind"] == "random":
        accuracy["accuracy_note"] = eval_set.source["note"]
    if latency is not None:
        notes.append(latency["note"])
    if report.weights is not None and report.weights.random:
        notes.append("RANDOM WEIGHTS: accuracy numbers of an untrained model mean nothing")

    earlier = None if earlier_run is None else earlier_run.against(
        model, precision, target.description["backend"], eval_set.source, environment.cpu_model())
    results = evaluate_gates(gates, accuracy, latency, earlier) + target_gates(report.mixed_precision)
    for gate in results:
        if gate.status == "skipped" and (options.require_gates or gates.sources.get(gate.name.split("@")[0]) != "default"):
            message = f"gate {gate.name} was SKIPPED, not checked: {gate.reason}" + (
                " and --require-gates makes that a failure" if options.require_gates else "; pass --require-gates to fail on it")
            notes.append(message)
            console.warn(message)

    held_out = held_out_check(read_metadata(target_onnx).get("mixed_precision") if precision == "int8" else None, accuracy)
    report.verification = {
        "accuracy": accuracy,
        **({"mixed_precision": held_out} if held_out is not None else {}),
        "latency": latency,
        "eval_data": eval_set.source,
        "baseline": baseline.description,
        "target": target.description,
        "backend": target.description["backend"],
        "threads": options.threads or BuildOptions().intra_op_threads,
        "environment": machine.describe(),
        "notes": notes,
    }
    report.record_stages(**{"baseline": None, "target": None, "decode": None, "latency": None, **seconds})
    outcome = VerifyOutcome(directory, report, results, require_gates=options.require_gates)
    report.gates = gates_record(gates, results, earlier) | {
        "required": options.require_gates, "passed": bool(outcome), "failed": [r.name for r in outcome.failed]}
    outcome.outputs["report_json"] = write_report(directory, report)
    outcome.outputs["report_md"] = outputs.write_markdown(directory, report)
    if options.junit is not None:
        outcome.outputs["junit"] = outputs.write_junit(options.junit, report)
    if options.plot and latency is not None:
        try:
            plot = outputs.write_latency_plot(directory, report)
        except ImportError:
            console.warn("matplotlib is not installed; latency.png was not written (pip install matplotlib)")
        else:
            if plot is not None:
                outcome.outputs["latency_png"] = plot
    return outcome


def _cached_baseline(directory: Path, report: Report, eval_set: Any, cfg: PreprocessConfig,
                     options: VerifyOptions) -> BaselineLogits | None:
    """The FP32 accuracy reference from the baseline cache (``--baseline onnx``): ONNX Runtime CPU, computed once
    per (FP32 ONNX, evaluation subset, preprocessing); the torch baseline is computed every time."""
    if options.baseline != "onnx":
        return None
    fp32 = directory / (report.artifacts.baseline() or FP32_NAME)  # a bare file's report names its reference absolutely
    if not fp32.is_file():
        return None
    key = BaselineKey.for_model(fp32, eval_images_sha256(eval_set), len(eval_set), cfg.to_dict())
    return BaselineLogits(fp32, key, options.cache_dir, options.threads)


def _runner_facts(runner: Any) -> dict[str, Any]:
    facts: dict[str, Any] = {}
    for name in ("start_mode", "start_reason", "providers", "latency_scope"):
        value = getattr(runner, name, None)
        if value is not None:
            facts[name] = value
    return facts


def regate_directory(directory: Path, options: VerifyOptions) -> VerifyOutcome:
    """Check the gates again on the measurements already in report.json (new thresholds or --compare-to), no inference."""
    directory = Path(directory)
    report = _open_directory(directory)
    ver = report.verification
    if ver is None:
        raise InputError(f"{directory} was never verified", hint="run `resnext-deploy verify` on it")
    assert report.model is not None and report.precision is not None
    model, precision = report.model.name, report.precision
    gates = load_gates(model, precision, options.thresholds, options.gates_file, comparing=options.compare_to is not None)
    earlier = None
    if options.compare_to is not None:
        earlier = load_earlier_run(options.compare_to).against(
            model, precision, ver.backend, ver.eval_data, ver.environment.get("cpu"))
    results = evaluate_gates(gates, ver.accuracy, ver.latency, earlier) + target_gates(report.mixed_precision)
    report.gates = gates_record(gates, results, earlier)
    outcome = VerifyOutcome(directory, report, results)
    outcome.outputs["report_json"] = write_report(directory, report)
    outcome.outputs["report_md"] = outputs.write_markdown(directory, report)
    if options.junit is not None:
        outcome.outputs["junit"] = outputs.write_junit(options.junit, report)
    return outcome
