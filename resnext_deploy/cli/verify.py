"""`resnext-deploy verify`: accuracy and latency of an export vs its FP32 baseline, gated for CI."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from resnext_deploy.cli._errors import handles_errors
from resnext_deploy.cli._options import VerifyBackendOpt, VerifyThreadsOpt
from resnext_deploy.cli.groups import EvaluationArgs, GateArgs, LatencyArgs, uses, verify_options
from resnext_deploy.verification import verify_directory
from resnext_deploy.verification.outputs import print_summary


@handles_errors
@uses(evaluation=EvaluationArgs, latency=LatencyArgs, gates=GateArgs)
def verify(
    directory: Annotated[Path, typer.Argument(help="Export directory, or a bare .onnx file (its metadata_props are used) or .engine file (with its sidecar).",
                                              show_default=False)],
    evaluation: EvaluationArgs,
    latency: LatencyArgs,
    gates: GateArgs,
    backend: VerifyBackendOpt = None,
    threads: VerifyThreadsOpt = None,
    reference: Annotated[Path | None, typer.Option("--reference", help="Bare .onnx: the FP32 model to compare with, "
                                                   "an FP32 file included [default: model.onnx beside it; an FP32 file is "
                                                   "then compared with itself].", show_default=False)] = None,
    model: Annotated[str | None, typer.Option("--model", help="Bare .onnx without metadata: the zoo model whose "
                                              "preprocessing to use.", show_default=False)] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Bare .onnx: where the reports go "
                                                "[default: NAME.verify/ beside it].", show_default=False)] = None,
    cache_dir: Annotated[Path | None, typer.Option("--cache-dir", help="Cache of FP32 baseline logits (beside the "
                                                   "calibration statistics) [default: $RESNEXT_DEPLOY_CACHE or "
                                                   "~/.cache/resnext-deploy].", show_default=False)] = None,
) -> None:
    """Compare DIRECTORY's artifact with its FP32 baseline (accuracy, latency), check the gates, write reports.

    Exit codes: 0 every gate passed, 1 a gate failed (all outputs are still written), 2 bad input or a machine
    problem, 3 internal error, 130/143 interrupted.
    """

    options = verify_options(evaluation, latency, gates, threads,
                             backend=backend.value if backend is not None else None, reference=reference, model=model,
                             output=output, cache_dir=cache_dir)
    outcome = verify_directory(directory, options)
    print_summary(outcome.report)
    outcome.raise_for_gates()
