"""The export's mixed-precision stage: sensitivity, fallback until the accuracy target holds, the report section.

Calibration owns the measurement (``calibration.sensitivity``) and the search
(``calibration.fallback``); this module wires them to the export directory: the tuning images
pinned in the calibration manifest, the FP32 reference, verification's metrics, the export's
own backend for the optional latency budget, the INT8 artifact and its metadata.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from resnext_deploy import console
from resnext_deploy.calibration.baseline_cache import tuning_baseline
from resnext_deploy.calibration.fallback import TARGETS, Budget, Measurement, Targets, search_fallback
from resnext_deploy.calibration.qdq_placement import strongly_typed_placement_problems
from resnext_deploy.calibration.quantize import describe_int8, write_int8
from resnext_deploy.calibration.sensitivity import DEFAULT_PROBE_IMAGES, cached_sensitivity, run_logits
from resnext_deploy.engines import BuildOptions
from resnext_deploy.errors import GateFailed, InputError, UsageError
from resnext_deploy.layout import FALLBACK_PRECISIONS, FP32_NAME, SENSITIVITY_NAME, SENSITIVITY_PLOT_NAME, artifact_name
from resnext_deploy.metadata import get_metadata, set_metadata
from resnext_deploy.sensitivity_report import load_tuning, sensitivity_document, write_outputs
from resnext_deploy.verification.accuracy import compare_logits
from resnext_deploy.verification.latency import LatencyPlan, measure_latency

DEFAULT_TUNE_SIZE = 128
AUTO = "auto"
FALLBACK_CHOICES = (AUTO, *FALLBACK_PRECISIONS)
LATENCY_ROUNDS = 3


@dataclass
class MixedPrecisionOptions:
    """Accuracy targets on the tuning images and the fallback budget; without a target there is no fallback."""

    targets: Targets | None = None
    budget: Budget | None = None  # None: the defaults
    tune_size: int = DEFAULT_TUNE_SIZE  # held-out images pinned in the manifest for every INT8 export
    probe_images: int = DEFAULT_PROBE_IMAGES  # of the tuning images, used per site by the sensitivity analysis
    fallback_precision: str = AUTO  # what layers kept out of INT8 run in on the export's engine (layout.FALLBACK_PRECISIONS)
    time_steps: bool = True  # time every step of the search on the export's engine (report: latency per step)

    def __post_init__(self) -> None:
        if self.fallback_precision not in FALLBACK_CHOICES:
            raise UsageError(f"unknown fallback precision {self.fallback_precision!r}",
                             hint=f"use one of: {', '.join(FALLBACK_CHOICES)}")
        if self.tune_size <= 0:
            raise UsageError(f"--tune-size must be positive, got {self.tune_size}", hint="for example --tune-size 128")
        if self.probe_images <= 0:
            raise UsageError(f"probe images must be positive, got {self.probe_images}")

    @property
    def enabled(self) -> bool:
        return bool(self.targets)


@dataclass
class FallbackOutcome:
    """The report section and, when the budget ran out first, the failed target gates (exit 1 at the end)."""

    section: dict[str, Any]
    failed: list[str] = field(default_factory=list)

    def raise_if_failed(self, other: GateFailed | None = None) -> None:
        """``GateFailed`` naming the mixed-precision gate (and any verification failure) when a target was missed."""
        if not self.failed:
            if other is not None:
                raise other
            return
        message = f"mixed precision gate failed: {self.section['gate_description']}"
        if other is not None:
            message += f"; {other.message}"
        raise GateFailed(message, hint=self.section["hint"])


def run_fallback(
    output: Path, options: MixedPrecisionOptions, setup: Any, manifest: Any, cfg: Any, backend: Any,
    engine_options: Any, calibration_record: dict[str, Any], progress: bool = True,
    fallback: tuple[str, str] = ("fp32", "default"),
) -> tuple[FallbackOutcome, Any]:
    """Analyse, search, write the chosen INT8 artifact and sensitivity outputs; returns (outcome, QuantizationResult)."""
    import time

    started = time.perf_counter()
    budget = options.budget or Budget()
    tuning = load_tuning(manifest, cfg, progress=progress)
    threads = getattr(engine_options, "threads", None)
    reference, baseline = tuning_baseline(output / FP32_NAME, tuning.array, str(manifest.tuning_sha256), cfg.to_dict(),
                                          _cache_dir(setup), threads)
    with console.stage(f"sensitivity of every INT8 layer on {len(tuning)} tuning images"):
        result = cached_sensitivity(setup, tuning.array, str(manifest.tuning_sha256), probe_images=options.probe_images,
                                    cache_dir=_cache_dir(setup), threads=threads, progress=progress,
                                    reference=reference)
    order = result.fallback_order(fallback[0])
    costs = result.cost_model(fallback[0])
    labels = tuning.labels
    timed = options.time_steps or budget.max_latency_ratio is not None
    latency = _LatencyProbe(backend, output / FP32_NAME, engine_options) if timed else None

    quantized: dict[tuple[str, ...], tuple[Any, list[str]]] = {}  # the step's model: timed, and written if chosen

    def evaluate(float_layers: list[str]) -> Measurement:
        model, _ = quantized[tuple(float_layers)] = setup.quantize(float_layers)
        return Measurement(compare_logits(reference, run_logits(model, tuning.array), labels))

    def time_step(float_layers: list[str]) -> float:
        assert latency is not None
        model = quantized[tuple(float_layers)][0]
        # what the engine reads to run the float layers at the fallback precision, as in the artifact written
        set_metadata(model, {"mixed_precision": {"fallback_precision": fallback[0], "float_layers": float_layers}})
        return latency.ratio(model)

    search_started = time.perf_counter()
    with console.stage(f"fallback until {_targets_text(options.targets)} on the tuning images"), \
            console.progress_bar(progress) as bar:
        task = bar.add_task("search", total=None)

        def on_step(step: Any) -> None:
            timed = f", x{step.latency_ratio:.2f} of FP32" if step.latency_ratio is not None else ""
            cosine = step.metrics.get("mean_cosine")
            bar.update(task, advance=1, description=f"search: {len(search_steps) + 1} steps, last {step.layers_in_float} "
                                                     f"in float, cosine {cosine:.5f}{timed}")
            search_steps.append(step)

        search_steps: list[Any] = []
        try:
            search = search_fallback(order, evaluate, options.targets, budget,
                                     predict_cosine=lambda k: result.predicted_cosine(order[:k]),
                                     predict_latency=(lambda k: costs.predicted_latency(order[:k])) if costs else None,
                                     on_step=on_step, timer=time_step if latency is not None else None)
        finally:
            if latency is not None:
                latency.close()
    chosen = search.chosen.float_layers
    model, released = quantized[tuple(chosen)]
    section = fallback_section(options, budget, result, search, manifest, labels is not None, setup.recipe,
                               setup.float_precision_applied)
    section["fallback_precision"], section["fallback_precision_reason"] = fallback
    section["summary"] = summary_line(section)
    if setup.recipe.release_residual_conv_side:  # a recipe for a strongly typed engine: fallback must keep fusable Q/DQ

        section["placement_problems"] = strongly_typed_placement_problems(model)
    section["baseline"] = baseline
    section["search_seconds"] = round(time.perf_counter() - search_started, 3)
    section["seconds"] = round(time.perf_counter() - started, 3)
    write_int8(setup, model, output / artifact_name("int8"), calibration_record,
               extra_metadata={"mixed_precision": artifact_record(section)})
    document = sensitivity_document(_model_name(setup), result, manifest, chosen)
    written = write_outputs(output, document, result)
    section["sensitivity"]["files"] = [path.name for path in written.values()]
    quantization = describe_int8(setup, model, output / artifact_name("int8"), released, chosen, section["seconds"])
    return FallbackOutcome(section, [] if search.reached else list(search.failing)), quantization


def fallback_section(options: MixedPrecisionOptions, budget: Any, result: Any, search: Any, manifest: Any,
                     labelled: bool, recipe: Any, float_precision_applied: str = "fp32") -> dict[str, Any]:
    """report.json's ``mixed_precision``: targets, budget, every step, the float layers with reasons, the verdict."""
    by_name = {layer.name: layer for layer in result.layers}
    chosen = search.chosen
    ordered = sorted(search.steps, key=lambda s: s.layers_in_float)
    full_int8 = ordered[0].latency_ratio if ordered and ordered[0].layers_in_float == 0 else None
    steps = [_step_record(step, full_int8) for step in ordered]
    float_layers = [_layer_record(by_name[name], index, len(result.layers))
                    for index, name in enumerate(chosen.float_layers, start=1)]
    cost = sum(by_name[name].cost_share for name in chosen.float_layers)
    section: dict[str, Any] = {
        "targets": options.targets.to_dict(),
        "budget": budget.to_dict(),
        "measured_on": "tuning images (held out from calibration, pinned in calibration/manifest.json) "
                       "on ONNX Runtime CPU, logits vs FP32",
        "tuning": {"images": result.tuning_images, "labelled": labelled, "sha256": manifest.tuning_sha256},
        "float_precision": recipe.float_regions,
        "float_precision_applied": float_precision_applied,
        "sensitivity": {"file": SENSITIVITY_NAME, "plot": SENSITIVITY_PLOT_NAME, "cache_hit": result.cache_hit,
                        "seconds": result.seconds, "layers": len(result.layers), "probe_images": result.probe_images},
        "steps": steps,
        "float_layers": float_layers,
        "float_layer_count": len(float_layers),
        "float_cost_share": cost,
        "chosen": _step_record(chosen, full_int8),
        "latency_measured_on": "the export's engine at its smallest batch, median of alternating rounds against FP32"
                               if full_int8 is not None else None,
        "reached": search.reached,
        "stopped_by": search.stopped_by,
        "failed": list(search.failing),
    }
    section["gate_description"] = _gate_description(section, search, budget)
    section["hint"] = ("raise --max-fallback-layers" + (" or --max-latency-ratio" if budget.max_latency_ratio else "")
                       + ", or lower the target; the best artifact found is model.int8.onnx (report.json: mixed_precision)")
    section["summary"] = summary_line(section)
    return section


def artifact_record(section: dict[str, Any]) -> dict[str, Any]:
    """What the INT8 ONNX carries in its metadata: the float layers (names the quantizer takes), why, and the verdict."""
    return {
        "float_layers": [layer["name"] for layer in section["float_layers"]],
        "float_layer_labels": [layer["label"] for layer in section["float_layers"]],
        "float_precision": section["float_precision_applied"],
        "fallback_precision": section.get("fallback_precision", section["float_precision_applied"]),
        "targets": section["targets"],
        "reached": section["reached"],
        "tuning_metrics": {k: section["chosen"][k] for k in ("cosine", "agreement", "top1_drop_pp")},
        "tuning_sha256": section["tuning"]["sha256"],
    }


def summary_line(section: dict[str, Any]) -> str:
    """One line: what was kept in float, what it cost, what it reached."""
    chosen, first = section["chosen"], section["steps"][0]
    precision = section.get("fallback_precision", section["float_precision_applied"]).upper()
    count = section["float_layer_count"]
    if count:
        kept = f"{count} layer{'s' if count != 1 else ''} kept in {precision} ({section['float_cost_share']:.1%} of MACs)"
    else:
        kept = "no layer kept in float"
    change = f"tuning cosine {first['cosine']:.5f} -> {chosen['cosine']:.5f}, agreement {first['agreement']:.3f} -> {chosen['agreement']:.3f}"
    latency = f", latency x{chosen['latency_ratio']:.2f} of FP32" if chosen.get("latency_ratio") is not None else ""
    if chosen.get("latency_x_int8") is not None:
        latency += f" (x{chosen['latency_x_int8']:.2f} of full INT8)"
    verdict = "target reached" if section["reached"] else f"TARGET MISSED ({section['gate_description']})"
    return f"{kept}: {change}{latency}; {verdict}"


def _gate_description(section: dict[str, Any], search: Any, budget: Any) -> str:
    chosen = search.chosen
    parts = []
    for name in search.failing:

        direction, key, _ = TARGETS[name]
        op = ">=" if direction == "min" else "<="
        measured = chosen.metrics.get(key)
        shown = "not measured" if measured is None else f"{measured:.5g}"
        parts.append(f"{name}: {shown} does not satisfy {op} {section['targets'][name]:g}")
    limit = {"max_fallback_layers": f"--max-fallback-layers {budget.max_layers} reached",
             "max_latency_ratio": f"--max-latency-ratio {budget.max_latency_ratio} reached",
             "all_layers": "every layer tried"}.get(search.stopped_by or "", "")
    text = "; ".join(parts) or "targets met"
    return f"{text} with {chosen.layers_in_float} layers in float ({limit})" if limit else text


def _step_record(step: Any, full_int8: float | None = None) -> dict[str, Any]:
    metrics = step.metrics
    measured = step.latency_ratio / full_int8 if step.latency_ratio is not None and full_int8 else None
    return {
        "layers_in_float": step.layers_in_float,
        "cosine": metrics.get("mean_cosine"),
        "agreement": metrics.get("top1_agreement"),
        "top1_drop_pp": metrics.get("top1_drop_pp"),
        "sqnr_db": metrics.get("sqnr_db"),
        "latency_ratio": step.latency_ratio,
        "latency_x_int8": measured,
        "predicted_cosine": step.predicted_cosine,
        "predicted_latency_x_int8": step.predicted_latency,
        "meets_target": step.meets_target,
        "within_budget": step.within_budget,
        "seconds": step.seconds,
    }


def _layer_record(layer: Any, order: int, total: int) -> dict[str, Any]:
    return {
        "name": layer.name, "label": layer.label, "op_type": layer.op_type, "cost_share": layer.cost_share,
        "rank": layer.rank, "output_nsr": layer.output_nsr,
        "reason": (f"fallback #{order}: sensitivity rank {layer.rank}/{total}; alone in INT8 it adds logits noise "
                   f"{layer.output_nsr:.2e} (cosine -{layer.cosine_drop:.1e}) for {layer.cost_share:.1%} of the MACs"),
    }


def _targets_text(targets: Any) -> str:
    return ", ".join(f"{name.removeprefix('target_')} {'>=' if TARGETS[name][0] == 'min' else '<='} {value:g}"
                     for name, value in targets.thresholds.items())


def _cache_dir(setup: Any) -> Path:
    """The sensitivity cache sits next to the statistics the setup read."""
    return setup.stats.path.parent.parent


def _model_name(setup: Any) -> str:
    return str(get_metadata(setup.fp32_model).get("model_name", "model"))


class _LatencyProbe:
    """INT8/FP32 latency at the engine's smallest batch (1 unless --min-batch) on the export's own backend,
    alternating blocks over a few rounds."""

    def __init__(self, backend: Any, fp32: Path, engine_options: Any) -> None:
        import dataclasses

        self._backend = backend
        self._folder = tempfile.TemporaryDirectory(prefix="resnext-mp-latency.")
        self._options = dataclasses.replace(engine_options or BuildOptions(), precision=None)
        self._baseline = backend.load(backend.build(fp32, dataclasses.replace(self._options, precision="fp32"),
                                                    output_dir=Path(self._folder.name)), self._options)
        self._baseline.__enter__()

    def ratio(self, model: Any) -> float:
        """Median over rounds of target p50 / baseline p50."""
        import dataclasses
        import os

        import onnx

        path = Path(self._folder.name) / "candidate.int8.onnx"
        onnx.save(model, os.fspath(path))
        built = self._backend.build(path, dataclasses.replace(self._options, precision="int8"), output_dir=path.parent)
        batch = max(self._options.min_batch, self._baseline.batch_range[0])  # inside every profile built here
        plan = LatencyPlan(batch_sizes=(batch,), duration=0.5, iterations=10, warmup_s=0.1)
        ratios = []
        with self._backend.load(built, self._options) as target:
            for _ in range(LATENCY_ROUNDS):
                row = measure_latency(self._baseline, target, plan, progress=False)["per_batch"][str(batch)]
                if "skipped" in row:
                    raise InputError(f"the search's latency could not be measured ({row['skipped']})",
                                     hint="use --min-batch 1, or --no-search-latency without --max-latency-ratio")
                ratios.append(row["target"]["p50_ms"] / row["baseline"]["p50_ms"])
        return float(np.median(ratios))

    def close(self) -> None:
        self._baseline.__exit__(None, None, None)
        self._folder.cleanup()
