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
    out.print(f"[bold]{report['model']['name']}[/] -> {directory}")
    for warning in report["warnings"]:
        out.print(f"  [bold yellow]! {warning}[/]")
    out.print(f"  weights   {report['weights']['origin']}")
    out.print(f"  fp32 onnx {directory / export['path']} ({export['size_bytes'] / 1e6:.1f} MB, opset {export['opset']})")
    out.print(f"  bn folded {export['batchnorm']['folded']} layers (max abs diff {export['batchnorm']['fold_max_abs_diff']:.2e})")
    out.print(f"  simplify  {simplify['nodes_before']} -> {simplify['nodes_after']} nodes ({simplify['reason']})")
    out.print(f"  parity    max abs diff {parity['max_abs_diff']:.2e}, cosine {parity['min_cosine']:.6f} vs PyTorch")
    out.print(f"  report    {directory / 'report.json'}")
