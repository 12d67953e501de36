"""Short human summaries printed at the end of a command."""

from __future__ import annotations

from pathlib import Path

from resnext_deploy.console import out
from resnext_deploy.report import Report


def print_export_summary(directory: Path, report: Report) -> None:
    """What was written and the numbers a person checks first."""
    export, model, weights = report.export, report.model, report.weights
    assert export is not None and model is not None and weights is not None
    parity = export.parity or {}
    simplify = export.simplify or {}
    batchnorm = export.batchnorm or {}
    out.print(f"[bold]{model.name}[/] {report.precision} -> {directory}")
    for warning in report.warnings:
        out.print(f"  [bold yellow]! {warning}[/]")
    out.print(f"  weights     {weights.origin}")
    out.print(f"  fp32 onnx   {export.path} ({(export.size_bytes or 0) / 1e6:.1f} MB, opset {export.opset}); "
              f"{batchnorm['folded']} BatchNorms folded (max abs diff {batchnorm['fold_max_abs_diff']:.1e})")
    out.print(f"  simplify    {simplify['nodes_before']} -> {simplify['nodes_after']} nodes ({simplify['reason']})")
    out.print(f"  parity      max abs diff {parity['max_abs_diff']:.1e}, cosine {parity['min_cosine']:.6f} vs PyTorch")
    calibration = report.calibration
    if calibration is not None:
        out.print(f"  calibration {calibration.size} images, {calibration.method}, "
                  f"{calibration.skipped} skipped, manifest {(calibration.manifest_sha256 or '')[:12]}")
    quant = report.quantization
    if quant is not None and report.precision == "int8":
        out.print(f"  int8        {quant.path}: {quant.recipe} recipe, {getattr(quant, 'quantize_linear_nodes', '?')} Q nodes, "
                  f"{getattr(quant, 'excluded_count', '?')} convs left in float, "
                  f"statistics {'cached' if quant.stats_cache_hit else 'computed'}")
        if report.mixed_precision:
            out.print(f"  mixed prec. {report.mixed_precision['summary']}")
    elif quant is not None:
        out.print(f"  fp16        {quant.path}")
    if report.engine is not None:
        out.print(f"  engine      {report.engine.backend}: {Path(report.engine.artifact['path']).name}")
    out.print(f"  report      {directory / 'report.json'}")
