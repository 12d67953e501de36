"""Option groups, declared once and composed into the commands that need them.

Polygraphy's ``tools/args`` model in Typer's terms: a group is a dataclass whose fields are
``Annotated`` Typer options; ``@uses(calibration=CalibrationArgs, ...)`` adds the group's
options to a command's signature and calls the command with one parsed instance per group.
Each group turns itself into the typed object the library takes (``CalibrationOptions``,
``BuildOptions``, ``GateThresholds``, ...), so a flag, its TOML key and its report key share
one name.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from resnext_deploy.bundle.signing import TrustPolicy
from resnext_deploy.calibration.fallback import Budget, Targets
from resnext_deploy.cli._options import Baseline, CalibMethod, Exporter, FallbackPrecision, Recipe
from resnext_deploy.engines import BuildOptions
from resnext_deploy.engines.registry import backend_names
from resnext_deploy.export.mixed_precision import MixedPrecisionOptions
from resnext_deploy.export.options import CalibrationOptions, Fp32Options
from resnext_deploy.verification import VerifyOptions
from resnext_deploy.verification.gates import GateThresholds
from resnext_deploy.verification.options import parse_batch_sizes, parse_providers

F = TypeVar("F", bound=Callable[..., Any])


def uses(**groups: type) -> Callable[[F], F]:
    """Add each group's fields as options of the decorated command; pass it one instance per group.

    ``@uses(calibration=CalibrationArgs)`` on ``def export(model, calibration: CalibrationArgs)``
    gives ``export`` every ``--calib-*`` option and calls it with ``calibration=CalibrationArgs(...)``.
    """

    def decorate(command: F) -> F:
        signature = inspect.signature(command, eval_str=True)
        own = [param for name, param in signature.parameters.items() if name not in groups]
        taken = {param.name for param in own}
        added: list[inspect.Parameter] = []
        for group in groups.values():
            hints = typing.get_type_hints(group, include_extras=True)
            for item in dataclasses.fields(group):
                if item.name in taken:
                    raise TypeError(f"option {item.name!r} of {group.__name__} is declared twice in {command.__name__}")
                taken.add(item.name)
                added.append(
                    inspect.Parameter(item.name, inspect.Parameter.KEYWORD_ONLY, default=item.default, annotation=hints[item.name])
                )

        @functools.wraps(command)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            for key, group in groups.items():
                kwargs[key] = group(**{item.name: kwargs.pop(item.name) for item in dataclasses.fields(group)})
            return command(*args, **kwargs)

        parameters = own + added
        wrapper.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
        wrapper.__annotations__ = {param.name: param.annotation for param in parameters}
        return wrapper  # type: ignore[return-value]

    return decorate


_EXPORT = "Export"
_CALIB = "Calibration (INT8)"
_ENGINE = "Engine build"
_EVAL = "Evaluation"
_LATENCY = "Latency"
_GATES = "Gates"
_MIXED = "Mixed precision (INT8)"


@dataclass
class ExportArgs:
    """How the FP32 ONNX is made and checked."""

    opset: Annotated[
        int | None, typer.Option("--opset", help="ONNX opset to export with [default: 18 with the dynamo exporter, 17 with "
                                 "torchscript].", rich_help_panel=_EXPORT, show_default=False)
    ] = None
    exporter: Annotated[
        Exporter, typer.Option("--exporter", help="torch.onnx exporter: dynamo (torch.export + onnxscript) or the deprecated "
                               "TorchScript one.", rich_help_panel=_EXPORT)
    ] = Exporter.dynamo
    simplify: Annotated[
        bool, typer.Option("--simplify/--no-simplify", help="Simplify the graph with onnxsim (kept only when outputs match).",
                           rich_help_panel=_EXPORT)
    ] = True
    atol: Annotated[
        float, typer.Option("--atol", help="Parity vs PyTorch: absolute tolerance on logits.", rich_help_panel=_EXPORT, min=0.0)
    ] = 1e-4
    rtol: Annotated[
        float, typer.Option("--rtol", help="Parity vs PyTorch: tolerance relative to the largest logit.", rich_help_panel=_EXPORT,
                            min=0.0)
    ] = 1e-3
    input_size: Annotated[
        int | None, typer.Option("--input-size", help="Input resolution, one the zoo lists for the model [default: the zoo's].",
                                 rich_help_panel=_EXPORT, show_default=False)
    ] = None

    def to_options(self) -> Fp32Options:
        """The export's ``Fp32Options``."""
        return Fp32Options(opset=self.opset, exporter=self.exporter.value, simplify=self.simplify, atol=self.atol,
                           rtol=self.rtol, input_size=self.input_size)


@dataclass
class CalibrationArgs:
    """Where the INT8 calibration images come from and how ranges are computed."""

    calib_data: Annotated[
        Path | None,
        typer.Option("--calib-data", help="Calibration images: ImageNet root (train/ is used), ImageFolder, or a flat folder "
                     "with --calib-labels.", rich_help_panel=_CALIB, show_default=False),
    ] = None
    calib_labels: Annotated[
        Path | None,
        typer.Option("--calib-labels", help="Labels of a flat --calib-data folder: LOC_val_solution.csv or 'filename label' lines.",
                     rich_help_panel=_CALIB, show_default=False),
    ] = None
    calib_size: Annotated[
        int, typer.Option("--calib-size", help="Images in the class-stratified calibration subset.", rich_help_panel=_CALIB)
    ] = 512
    calib_manifest: Annotated[
        Path | None,
        typer.Option("--calib-manifest", help="Re-use a subset manifest (calibration/manifest.json of an earlier run).",
                     rich_help_panel=_CALIB, show_default=False),
    ] = None
    calib_method: Annotated[
        CalibMethod,
        typer.Option("--calib-method", help="Activation range method; auto: the recipe's own.", rich_help_panel=_CALIB),
    ] = CalibMethod.auto
    calib_seed: Annotated[int, typer.Option("--calib-seed", help="Seed of the calibration subset.", rich_help_panel=_CALIB)] = 0
    strict: Annotated[
        bool, typer.Option("--strict", help="Fail on unreadable images instead of skipping them.", rich_help_panel=_CALIB)
    ] = False
    recipe: Annotated[
        Recipe,
        typer.Option("--recipe", help="INT8 Q/DQ recipe; auto: the backend's (a TensorRT recipe made on a CPU machine is portable).",
                     rich_help_panel=_CALIB),
    ] = Recipe.auto
    keep_grouped_float: Annotated[
        bool | None,
        typer.Option("--keep-grouped-float/--quantize-grouped", help="Leave grouped 3x3 convs in float [default: the recipe's].",
                     rich_help_panel=_CALIB, show_default=False),
    ] = None
    cache_dir: Annotated[
        Path | None,
        typer.Option("--cache-dir", help="Calibration statistics cache [default: $RESNEXT_DEPLOY_CACHE or ~/.cache/resnext-deploy].",
                     rich_help_panel=_CALIB, show_default=False),
    ] = None
    targets: Annotated[
        str,
        typer.Option("--targets", help="Also make the INT8 artifact of these backends' recipes, comma-separated from "
                     f"{','.join(backend_names(with_auto=False))} (model.int8.<recipe>.onnx; model.int8.onnx stays the "
                     "--recipe one), from the same FP32 export, calibration images and statistics; a bundle then "
                     "builds each backend from its own artifact.",
                     rich_help_panel=_CALIB, show_default=False),
    ] = ""

    def to_options(self) -> CalibrationOptions:
        """The export's ``CalibrationOptions``."""

        return CalibrationOptions(
            data=self.calib_data, labels_file=self.calib_labels, size=self.calib_size, manifest=self.calib_manifest,
            method=self.calib_method.value, seed=self.calib_seed, strict=self.strict,
            keep_grouped_float=self.keep_grouped_float, cache_dir=self.cache_dir,
            targets=tuple(dict.fromkeys(t.strip() for t in self.targets.split(",") if t.strip())),
        )


@dataclass
class EngineArgs:
    """How the engine is built and run: threads, batch profile, TensorRT builder settings."""

    threads: Annotated[
        int | None, typer.Option("--threads", help="CPU inference threads [default: every usable core].", rich_help_panel=_ENGINE,
                                 show_default=False, min=1)
    ] = None
    min_batch: Annotated[int, typer.Option("--min-batch", help="Batch profile: smallest batch.", rich_help_panel=_ENGINE)] = 1
    opt_batch: Annotated[int, typer.Option("--opt-batch", help="Batch profile: batch to tune for.", rich_help_panel=_ENGINE)] = 1
    max_batch: Annotated[int, typer.Option("--max-batch", help="Batch profile: largest batch.", rich_help_panel=_ENGINE)] = 32
    workspace_mb: Annotated[
        int | None, typer.Option("--workspace-mb", help="TensorRT workspace limit in MiB.", rich_help_panel=_ENGINE, show_default=False)
    ] = None
    timing_cache: Annotated[
        Path | None, typer.Option("--timing-cache", help="Persistent TensorRT timing cache file.", rich_help_panel=_ENGINE,
                                  show_default=False)
    ] = None
    hardware_compatible: Annotated[
        bool, typer.Option("--hardware-compatible", help="TensorRT engine that runs on Ampere and newer GPUs.", rich_help_panel=_ENGINE)
    ] = False
    version_compatible: Annotated[
        bool, typer.Option("--version-compatible", help="TensorRT engine that runs on later TensorRT releases.",
                           rich_help_panel=_ENGINE)
    ] = False
    tf32: Annotated[
        bool, typer.Option("--tf32/--no-tf32", help="TensorRT: let FP32 layers use TF32 tensor cores (trtexec's default; "
                           "--no-tf32 for FP32 results closest to ONNX Runtime). Recorded in the engine's sidecar.",
                           rich_help_panel=_ENGINE)
    ] = True

    def to_build_options(self, precision: str | None = None) -> BuildOptions:
        """The engines' ``BuildOptions`` (validated there: batch range, positive sizes)."""

        return BuildOptions(
            precision=precision, threads=self.threads, min_batch=self.min_batch, opt_batch=self.opt_batch,
            max_batch=self.max_batch, workspace_mb=self.workspace_mb, timing_cache=self.timing_cache,
            hardware_compatible=self.hardware_compatible, version_compatible=self.version_compatible, tf32=self.tf32,
        )


@dataclass
class EvaluationArgs:
    """The evaluation images and the FP32 reference the artifact is compared with."""

    eval_data: Annotated[
        Path | None,
        typer.Option("--eval-data", help="Evaluation images: ImageNet root (val/ is used), ImageFolder, or a flat folder with "
                     "--eval-labels [default for export: the val/ of an ImageNet --calib-data; else random inputs].",
                     rich_help_panel=_EVAL, show_default=False),
    ] = None
    eval_labels: Annotated[
        Path | None,
        typer.Option("--eval-labels", help="Labels of a flat --eval-data folder: LOC_val_solution.csv or 'filename label' lines.",
                     rich_help_panel=_EVAL, show_default=False),
    ] = None
    eval_size: Annotated[int, typer.Option("--eval-size", help="Images in the deterministic evaluation subset.",
                                           rich_help_panel=_EVAL)] = 500
    eval_seed: Annotated[
        int, typer.Option("--eval-seed", help="Seed of the evaluation subset and of the random inputs.", rich_help_panel=_EVAL)
    ] = 0
    baseline: Annotated[
        Baseline, typer.Option("--baseline", help="FP32 reference: model.onnx on ONNX Runtime, or the PyTorch model.",
                               rich_help_panel=_EVAL)
    ] = Baseline.onnx
    baseline_provider: Annotated[
        str, typer.Option("--baseline-provider", help="ONNX Runtime execution providers of the FP32 onnx baseline, comma-"
                          "separated; 'auto' takes every working one, GPU first (TensorRT, CUDA with TF32). The report "
                          "names the providers that really ran.", rich_help_panel=_EVAL)
    ] = "CPUExecutionProvider"
    allow_partial_labels: Annotated[
        bool, typer.Option("--allow-partial-labels", help="Accept a labels file that names under 90% of a flat folder's "
                           "images (only the labelled ones are used) instead of failing.", rich_help_panel=_EVAL)
    ] = False

    def min_label_coverage(self) -> float | None:
        """0 with --allow-partial-labels, else None (the library's threshold)."""
        return 0.0 if self.allow_partial_labels else None


@dataclass
class LatencyArgs:
    """Latency measured like trtexec: a time budget per batch size, at least N runs, a timed warm-up."""

    batch_sizes: Annotated[str, typer.Option("--batch-sizes", help="Comma-separated latency batch sizes.",
                                             rich_help_panel=_LATENCY)] = "1,8"
    duration: Annotated[
        float, typer.Option("--duration", help="Seconds of timed runs per batch size and side (baseline, target).",
                            rich_help_panel=_LATENCY, min=0.0)
    ] = 3.0
    iterations: Annotated[
        int, typer.Option("--iterations", help="At least this many timed runs per batch size and side.", rich_help_panel=_LATENCY,
                          min=0)
    ] = 10
    warmup_ms: Annotated[
        float, typer.Option("--warmup-ms", help="Untimed warm-up per batch size and side, in milliseconds (at least one run).",
                            rich_help_panel=_LATENCY, min=0.0)
    ] = 200.0
    latency: Annotated[bool, typer.Option("--latency/--no-latency", help="Measure latency at all.", rich_help_panel=_LATENCY)] = True


@dataclass
class GateArgs:
    """CI gates: thresholds from flags or a TOML file (flags win), and the JUnit file."""

    gates: Annotated[
        Path | None,
        typer.Option("--gates", help="TOML gates file: [defaults] and [models.NAME.PRECISION] tables with the keys below "
                     "(max_top1_drop = 0.5, ...); flags override it.", rich_help_panel=_GATES, show_default=False),
    ] = None
    max_top1_drop: Annotated[
        float | None, typer.Option("--max-top1-drop", help="Largest top-1 drop, percentage points [default: 0.5].",
                                   rich_help_panel=_GATES, show_default=False)
    ] = None
    min_agreement: Annotated[
        float | None, typer.Option("--min-agreement", help="Smallest top-1 agreement with the baseline, 0..1.",
                                   rich_help_panel=_GATES, show_default=False)
    ] = None
    min_cosine: Annotated[
        float | None, typer.Option("--min-cosine", help="Smallest mean logits cosine vs the baseline.", rich_help_panel=_GATES,
                                   show_default=False)
    ] = None
    min_sqnr_db: Annotated[
        float | None, typer.Option("--min-sqnr-db", help="Smallest logits SQNR vs the baseline, dB.", rich_help_panel=_GATES,
                                   show_default=False)
    ] = None
    min_speedup: Annotated[
        float | None, typer.Option("--min-speedup", help="Smallest p50 speedup over the baseline, each batch size.",
                                   rich_help_panel=_GATES, show_default=False)
    ] = None
    max_p99_ms: Annotated[
        float | None, typer.Option("--max-p99-ms", help="Largest target p99 latency in ms, each batch size.",
                                   rich_help_panel=_GATES, show_default=False)
    ] = None
    compare_to: Annotated[
        Path | None,
        typer.Option("--compare-to", help="An earlier sweep.json or report.json: gate on regressions against it "
                     "(--max-top1-regression, --max-latency-growth); checked before any work.", rich_help_panel=_GATES,
                     show_default=False),
    ] = None
    max_top1_regression: Annotated[
        float | None, typer.Option("--max-top1-regression", help="Largest top-1 loss since the --compare-to run, percentage "
                                   "points [default: 0.5].", rich_help_panel=_GATES, show_default=False)
    ] = None
    max_latency_growth: Annotated[
        float | None, typer.Option("--max-latency-growth", help="Largest p50 growth since the --compare-to run, fraction, "
                                   "each batch size [default: 0.25].", rich_help_panel=_GATES, show_default=False)
    ] = None
    junit: Annotated[
        Path | None, typer.Option("--junit", help="Write the gates as JUnit XML here.", rich_help_panel=_GATES, show_default=False)
    ] = None
    require_gates: Annotated[
        bool, typer.Option("--require-gates", help="Fail (exit 1) when a gate could not be checked, e.g. top-1 without "
                           "labelled evaluation images, instead of reporting it skipped.", rich_help_panel=_GATES)
    ] = False

    def thresholds(self) -> GateThresholds:
        """The typed ``GateThresholds`` of the flags given (None = from the file or the default)."""

        return GateThresholds(**{item.name: getattr(self, item.name) for item in dataclasses.fields(GateThresholds)})


@dataclass
class MixedPrecisionArgs:
    """Accuracy-driven mixed precision: targets on held-out tuning images and how far the fallback may go."""

    target_cosine: Annotated[
        float | None, typer.Option("--target-cosine", help="Leave the most sensitive layers out of INT8 until the mean logits "
                                   "cosine vs FP32 on the tuning images reaches this (0..1].", rich_help_panel=_MIXED,
                                   show_default=False)
    ] = None
    target_agreement: Annotated[
        float | None, typer.Option("--target-agreement", help="... until top-1 agreement with FP32 on the tuning images "
                                   "reaches this (0..1].", rich_help_panel=_MIXED, show_default=False)
    ] = None
    target_top1_drop: Annotated[
        float | None, typer.Option("--target-top1-drop", help="... until the top-1 drop on the (labelled) tuning images is at "
                                   "most this many percentage points.", rich_help_panel=_MIXED, show_default=False)
    ] = None
    max_fallback_layers: Annotated[
        int, typer.Option("--max-fallback-layers", help="Most layers the fallback may leave out of INT8 (0: none); when the "
                          "target is still missed, the best artifact is written and the export exits 1.", rich_help_panel=_MIXED)
    ] = 16
    max_latency_ratio: Annotated[
        float | None, typer.Option("--max-latency-ratio", help="Most INT8/FP32 latency (batch 1, the export's backend) the "
                                   "fallback may spend, e.g. 0.75.", rich_help_panel=_MIXED, show_default=False)
    ] = None
    fallback_precision: Annotated[
        FallbackPrecision, typer.Option("--fallback-precision", help="What the layers kept out of INT8 run in on the "
                                        "export's engine: auto = the fastest float type it has here (OpenVINO: bf16 on "
                                        "AVX-512-BF16/AMX CPUs, set as the compiled model's inference precision; TensorRT: "
                                        "the recipe's FP16 regions; ONNX Runtime: fp32). report.json records what each "
                                        "kept layer really runs in.", rich_help_panel=_MIXED)
    ] = FallbackPrecision.auto
    search_latency: Annotated[
        bool, typer.Option("--search-latency/--no-search-latency", help="Time every candidate the search measures on "
                           "the export's engine (its smallest batch, against FP32 and full INT8) and record it per step; the "
                           "order is already cost-aware (float MACs and broken INT8 chains, modelled).",
                           rich_help_panel=_MIXED)
    ] = True
    tune_size: Annotated[
        int, typer.Option("--tune-size", help="Tuning images: held out from the calibration subset's source, pinned in "
                          "the manifest, never evaluation images.", rich_help_panel=_MIXED)
    ] = 128

    def to_options(self) -> MixedPrecisionOptions:
        """The export's ``MixedPrecisionOptions`` (targets and budget validated there: exit 2 with a hint)."""

        return MixedPrecisionOptions(
            targets=Targets(self.target_cosine, self.target_agreement, self.target_top1_drop),
            budget=Budget(self.max_fallback_layers, self.max_latency_ratio),
            tune_size=self.tune_size,
            fallback_precision=self.fallback_precision.value,
            time_steps=self.search_latency,
        )


def verify_options(evaluation: EvaluationArgs, latency: LatencyArgs, gates: GateArgs, threads: int | None,
                   **extra: Any) -> VerifyOptions:
    """The ``VerifyOptions`` of the evaluation, latency and gate groups (shared by export and verify)."""
    return VerifyOptions(
        eval_data=evaluation.eval_data, labels_file=evaluation.eval_labels, eval_size=evaluation.eval_size,
        seed=evaluation.eval_seed, baseline=evaluation.baseline.value,
        baseline_providers=parse_providers(evaluation.baseline_provider), batch_sizes=parse_batch_sizes(latency.batch_sizes),
        duration=latency.duration, iterations=latency.iterations, warmup_ms=latency.warmup_ms, latency=latency.latency,
        threads=threads, gates_file=gates.gates, junit=gates.junit, thresholds=gates.thresholds(),
        compare_to=gates.compare_to, require_gates=gates.require_gates,
        min_label_coverage=evaluation.min_label_coverage(), **extra,
    )


_TRUST = "Signature"


@dataclass
class TrustArgs:
    """Which signing keys a bundle must come from (``bundle.signing``)."""

    trusted_key: Annotated[
        list[Path] | None,
        typer.Option("--trusted-key", metavar="path", help="Ed25519 public key (PEM or ssh-ed25519) a signed bundle must verify against; "
                     "repeat for several.", rich_help_panel=_TRUST, show_default=False),
    ] = None
    require_signature: Annotated[
        bool, typer.Option("--require-signature", help="Refuse a bundle that is not signed by a --trusted-key.",
                           rich_help_panel=_TRUST)
    ] = False

    def to_policy(self) -> TrustPolicy:
        """The bundle's ``TrustPolicy`` (validated there: --require-signature needs a key)."""

        return TrustPolicy(tuple(self.trusted_key or ()), self.require_signature)
