"""`resnext-deploy export`: the whole job in one command."""

from __future__ import annotations

import sys

from resnext_deploy.cli._errors import handles_errors
from resnext_deploy.cli._options import (
    Backend,
    BackendOpt,
    ForceOpt,
    Fp32FromOpt,
    ModelArg,
    NoEngineOpt,
    NoVerifyOpt,
    OutputDirOpt,
    Precision,
    PrecisionOpt,
    SeedOpt,
    WeightsOpt,
)
from resnext_deploy.cli.groups import (
    CalibrationArgs,
    EngineArgs,
    EvaluationArgs,
    ExportArgs,
    GateArgs,
    LatencyArgs,
    MixedPrecisionArgs,
    uses,
    verify_options,
)
from resnext_deploy.cli.summary import print_export_summary
from resnext_deploy.export import ExportOptions, run_export


@handles_errors
@uses(settings=ExportArgs, calibration=CalibrationArgs, engine=EngineArgs, evaluation=EvaluationArgs,
      latency=LatencyArgs, gates=GateArgs, mixed=MixedPrecisionArgs)
def export(
    model: ModelArg,
    settings: ExportArgs,
    calibration: CalibrationArgs,
    engine: EngineArgs,
    evaluation: EvaluationArgs,
    latency: LatencyArgs,
    gates: GateArgs,
    mixed: MixedPrecisionArgs,
    precision: PrecisionOpt = Precision.fp32,
    backend: BackendOpt = Backend.auto,
    weights: WeightsOpt = "pretrained",
    seed: SeedOpt = 0,
    output: OutputDirOpt = None,
    force: ForceOpt = False,
    no_engine: NoEngineOpt = False,
    no_verify: NoVerifyOpt = False,
    fp32_from: Fp32FromOpt = None,
) -> None:
    """Export MODEL to ONNX (BN folded, simplified, parity-checked), make its FP16/INT8 artifact and engine,
    and verify it against FP32.

    Exit codes: 0 done and every gate passed, 1 a gate failed (all artifacts and reports are written), 2 bad input
    or a machine problem (disk full, permissions, output directory in use), 3 internal error, 130/143 interrupted.
    """
    import dataclasses

    verify = None if no_verify or no_engine else verify_options(evaluation, latency, gates, engine.threads)
    calibration_options = calibration.to_options()
    if evaluation.allow_partial_labels:
        calibration_options = dataclasses.replace(calibration_options, min_label_coverage=0.0)
    options = ExportOptions(
        model=model, precision=precision.value, backend=backend.value, recipe=calibration.recipe.value, weights=weights, seed=seed,
        output=output, fp32=settings.to_options(), force=force, build_engine=not no_engine,
        calibration=calibration_options, engine=engine.to_build_options(), verify=verify,
        mixed_precision=mixed.to_options(), fp32_from=fp32_from,
    )
    directory, report = run_export(options, command=sys.argv)
    print_export_summary(directory, report)
