"""`resnext-deploy export`: the whole job in one command."""

from __future__ import annotations

import sys

from resnext_deploy.cli._errors import handles_errors
from resnext_deploy.cli._options import (
    Backend, BackendOpt, ForceOpt, ModelArg, OpsetOpt, OutputDirOpt, Precision, PrecisionOpt, WeightsOpt,
)
from resnext_deploy.cli.summary import print_export_summary
from resnext_deploy.pipeline import ExportOptions, run_export


@handles_errors
def export(
    model: ModelArg,
    precision: PrecisionOpt = Precision.fp32,
    backend: BackendOpt = Backend.auto,
    weights: WeightsOpt = "pretrained",
    output: OutputDirOpt = None,
    opset: OpsetOpt = 17,
    force: ForceOpt = False,
) -> None:
    """Export MODEL to ONNX (BN folded, simplified, parity-checked) and build its deployable artifact."""
    options = ExportOptions(
        model=model, precision=precision.value, backend=backend.value, weights=weights,
        output=output, opset=opset, force=force,
    )
    directory, report = run_export(options, command=sys.argv)
    print_export_summary(directory, report)
