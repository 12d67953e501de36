"""`resnext-deploy export`: the whole job in one command."""

from __future__ import annotations

import sys

from resnext_deploy.cli._errors import handles_errors
from resnext_deploy.cli._options import (
    Backend, BackendOpt, CacheDirOpt, CalibDataOpt, CalibManifestOpt, CalibMethod, CalibMethodOpt, CalibSizeOpt,
    ForceOpt, GroupedOpt, HardwareCompatOpt, LabelsFileOpt, MaxBatchOpt, MinBatchOpt, ModelArg, NoEngineOpt,
    OpsetOpt, OptBatchOpt, OutputDirOpt, Precision, PrecisionOpt, Recipe, RecipeOpt, SeedOpt, StrictOpt,
    ThreadsOpt, TimingCacheOpt, VersionCompatOpt, WeightsOpt, WorkspaceOpt,
    BatchSizesOpt, EvalDataOpt, EvalSizeOpt, GatesFileOpt, IterationsOpt, JunitOpt, MaxTop1DropOpt,
    MinAgreementOpt, MinCosineOpt, NoVerifyOpt,
)
from resnext_deploy.cli.summary import print_export_summary
from resnext_deploy.pipeline import CalibrationOptions, ExportOptions, run_export


@handles_errors
def export(
    model: ModelArg,
    precision: PrecisionOpt = Precision.fp32,
    backend: BackendOpt = Backend.auto,
    weights: WeightsOpt = "pretrained",
    output: OutputDirOpt = None,
    opset: OpsetOpt = 17,
    force: ForceOpt = False,
    calib_data: CalibDataOpt = None,
    labels_file: LabelsFileOpt = None,
    calib_size: CalibSizeOpt = 512,
    calib_manifest: CalibManifestOpt = None,
    calib_method: CalibMethodOpt = CalibMethod.auto,
    seed: SeedOpt = 0,
    strict: StrictOpt = False,
    recipe: RecipeOpt = Recipe.auto,
    keep_grouped_float: GroupedOpt = None,
    cache_dir: CacheDirOpt = None,
    threads: ThreadsOpt = None,
    min_batch: MinBatchOpt = 1,
    opt_batch: OptBatchOpt = 1,
    max_batch: MaxBatchOpt = 32,
    workspace_mb: WorkspaceOpt = None,
    timing_cache: TimingCacheOpt = None,
    hardware_compatible: HardwareCompatOpt = False,
    version_compatible: VersionCompatOpt = False,
    no_engine: NoEngineOpt = False,
    eval_data: EvalDataOpt = None,
    eval_size: EvalSizeOpt = 500,
    batch_sizes: BatchSizesOpt = "1,8",
    iterations: IterationsOpt = 20,
    gates: GatesFileOpt = None,
    max_top1_drop: MaxTop1DropOpt = None,
    min_agreement: MinAgreementOpt = None,
    min_cosine: MinCosineOpt = None,
    junit: JunitOpt = None,
    no_verify: NoVerifyOpt = False,
) -> None:
    """Export MODEL to ONNX (BN folded, simplified, parity-checked), make its FP16/INT8 artifact and engine,
    and verify it against FP32.

    Exit codes: 0 done and every gate passed, 1 a gate failed (all artifacts and reports are written), 2 bad input.
    """
    from resnext_deploy.verification import VerifyOptions

    verify = None if no_verify or no_engine else VerifyOptions(
        eval_data=eval_data, labels_file=labels_file if eval_data is not None else None, eval_size=eval_size,
        batch_sizes=batch_sizes, iterations=iterations, threads=threads, gates_file=gates, junit=junit,
        thresholds={"max_top1_drop": max_top1_drop, "min_agreement": min_agreement, "min_cosine": min_cosine},
    )
    options = ExportOptions(
        model=model, precision=precision.value, backend=backend.value, recipe=recipe.value, weights=weights,
        output=output, opset=opset, force=force, build_engine=not no_engine,
        calibration=CalibrationOptions(
            data=calib_data, labels_file=labels_file, size=calib_size, manifest=calib_manifest,
            method=calib_method.value, seed=seed, strict=strict, keep_grouped_float=keep_grouped_float,
            cache_dir=cache_dir,
        ),
        engine_options=dict(
            threads=threads, min_batch=min_batch, opt_batch=opt_batch, max_batch=max_batch, workspace_mb=workspace_mb,
            timing_cache=timing_cache, hardware_compatible=hardware_compatible, version_compatible=version_compatible,
        ),
        verify=verify,
    )
    directory, report = run_export(options, command=sys.argv)
    print_export_summary(directory, report)
