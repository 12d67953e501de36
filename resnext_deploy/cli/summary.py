"""Short human summaries printed at the end of a command."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from resnext_deploy.console import out


def print_export_summary(directory: Path, report: dict[str, Any]) -> None:
    """What was written and the numbers a person checks first."""
    export = report["export"]
    parity = export["parity"]
    simplify = export["simplify"]
    out.print(f"[bold]{report['model']['name']}[/] {report['precision']} -> {directory}")
    for warning in report["warnings"]:
        out.print(f"  [bold yellow]! {warning}[/]")
    out.print(f"  weights     {report['weights']['origin']}")
    out.print(f"  fp32 onnx   {export['path']} ({export['size_bytes'] / 1e6:.1f} MB, opset {export['opset']}); "
              f"{export['batchnorm']['folded']} BatchNorms folded (max abs diff {export['batchnorm']['fold_max_abs_diff']:.1e})")
    out.print(f"  simplify    {simplify['nodes_before']} -> {simplify['nodes_after']} nodes ({simplify['reason']})")
    out.print(f"  parity      max abs diff {parity['max_abs_diff']:.1e}, cosine {parity['min_cosine']:.6f} vs PyTorch")
    calibration = report.get("calibration")
    if calibration:
        out.print(f"  calibration {calibration['size']} images, {calibration['method']}, "
                  f"{calibration['skipped']} skipped, manifest {calibration['manifest_sha256'][:12]}")
    quant = report.get("quantization")
    if quant and report["precision"] == "int8":
        out.print(f"  int8        {quant['path']}: {quant['recipe']} recipe, {quant['quantize_linear_nodes']} Q nodes, "
                  f"{quant['excluded_count']} convs left in float, statistics {'cached' if quant['stats_cache_hit'] else 'computed'}")
        mixed = report.get("mixed_precision")
        if mixed:
            out.print(f"  mixed prec. {mixed['summary']}")
    elif quant:
        out.print(f"  fp16        {quant['path']}")
    engine = report.get("engine")
    if engine:
        out.print(f"  engine      {engine['backend']}: {Path(engine['artifact']['path']).name}")
    out.print(f"  report      {directory / 'report.json'}")
