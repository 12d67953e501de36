"""`resnext-deploy sweep`: models x precisions x engines, one Pareto report, locally or on Ray."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from resnext_deploy.cli._errors import handles_errors
from resnext_deploy.cli.groups import (
    CalibrationArgs,
    EngineArgs,
    EvaluationArgs,
    ExportArgs,
    GateArgs,
    LatencyArgs,
    uses,
    verify_options,
)
from resnext_deploy.sweep import SweepOptions, make_plan, run_sweep
from resnext_deploy.sweep.outputs import print_summary

_SWEEP = "Sweep"


@handles_errors
@uses(settings=ExportArgs, calibration=CalibrationArgs, engine=EngineArgs, evaluation=EvaluationArgs,
      latency=LatencyArgs, gates=GateArgs)
def sweep(
    settings: ExportArgs,
    calibration: CalibrationArgs,
    engine: EngineArgs,
    evaluation: EvaluationArgs,
    latency: LatencyArgs,
    gates: GateArgs,
    plan: Annotated[Path | None, typer.Argument(
        help="TOML plan: models, precisions, backends (lists) and weights (one value, or a [weights] table per model).",
        show_default=False)] = None,
    models: Annotated[str | None, typer.Option("--models", help="Comma-separated zoo models (replaces the plan's).",
                                               rich_help_panel=_SWEEP, show_default=False)] = None,
    precisions: Annotated[str | None, typer.Option("--precisions", help="Comma-separated precisions [default: the plan's, "
                                                   "else fp32,fp16,int8].", rich_help_panel=_SWEEP, show_default=False)] = None,
    backends: Annotated[str | None, typer.Option("--backends", help="Comma-separated engines [default: the plan's, else "
                                                 "auto].", rich_help_panel=_SWEEP, show_default=False)] = None,
    weights: Annotated[str | None, typer.Option("--weights", "-w", help="Weights of every model: 'pretrained', 'random' or a "
                                                "checkpoint [default: the plan's, else pretrained].", rich_help_panel=_SWEEP,
                                                show_default=False)] = None,
    output: Annotated[Path, typer.Option("--output", "-o", help="Sweep directory: one export directory per cell, sweep.json, "
                                         "sweep.md, pareto.png.", rich_help_panel=_SWEEP)] = Path("out/sweep"),
    force: Annotated[bool, typer.Option("--force", "-f", help="Redo finished cells too (by default a sweep resumes).",
                                        rich_help_panel=_SWEEP)] = False,
    ray: Annotated[str | None, typer.Option("--ray", help="Run on Ray: 'auto' (the cluster Ray finds, else a local instance) "
                                            "or HOST:PORT; needs resnext-deploy[ray].", rich_help_panel=_SWEEP,
                                            show_default=False)] = None,
    workers: Annotated[int | None, typer.Option("--workers", help="Without --ray: processes of this machine [default: every "
                                                "usable core].", rich_help_panel=_SWEEP, show_default=False, min=1)] = None,
    shards: Annotated[int | None, typer.Option("--shards", help="Evaluation shards per cell [default: one per worker or Ray "
                                               "CPU].", rich_help_panel=_SWEEP, show_default=False, min=1)] = None,
    timeout: Annotated[float | None, typer.Option("--timeout", help="With --ray: seconds after which unfinished cells are "
                                                  "cancelled (a later run resumes them).", rich_help_panel=_SWEEP,
                                                  show_default=False)] = None,
) -> None:
    """Export, verify and gate every (model, precision, engine) of PLAN (or the flags): one FP32 export per model,
    one calibration subset and one evaluation subset for all, then sweep.md and pareto.png (accuracy vs latency).

    Exit codes: 0 every cell passed its gates, 1 a gate failed in some cell (all cells ran; they are named),
    2 bad input, or cells that could not run (named; the others are kept).
    """

    options = SweepOptions(
        plan=make_plan(plan, models, precisions, backends, weights), output=output,
        calibration=calibration.to_options(), verify=verify_options(evaluation, latency, gates, engine.threads),
        recipe=calibration.recipe.value, engine=engine.to_build_options(), force=force,
        fp32=settings.to_options(),
        workers=workers, ray=ray, shards=shards, timeout_s=timeout,
    )
    outcome = run_sweep(options, command=sys.argv)
    print_summary(outcome.sweep, outcome.directory)
    outcome.raise_for_cells()
