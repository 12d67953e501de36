"""`resnext-deploy models`: the zoo as a table or JSON."""

from __future__ import annotations

import json

from rich import box
from rich.table import Table

from resnext_deploy.cli._errors import handles_errors
from resnext_deploy.cli._options import JsonOpt
from resnext_deploy.console import out
from resnext_deploy.zoo import list_models


@handles_errors
def models(json_output: JsonOpt = False) -> None:
    """List the model zoo: parameters, MACs, preprocessing and reference accuracy."""
    specs = list_models()
    if json_output:
        print(json.dumps([spec.to_dict() for spec in specs], indent=2))
        return
    table = Table(title="resnext-deploy model zoo", box=box.SIMPLE_HEAD)
    for column in ("model", "params M", "GMACs", "MB", "size", "crop", "interp", "top-1", "top-5"):
        table.add_column(column, justify="left" if column in ("model", "interp") else "right", no_wrap=True)
    for spec in specs:
        p = spec.preprocess
        table.add_row(
            spec.name, f"{spec.params_m:.2f}", f"{spec.gmacs:.1f}", f"{spec.fp32_size_mb:.0f}", str(p.input_size),
            f"{p.crop_pct:.3f}", p.interpolation, _fmt(spec.top1), _fmt(spec.top5),
        )
    out.print(table)
    out.print("weights: " + "; ".join(f"{s.name} <- {s.timm_pretrained_name}" for s in specs), style="dim")


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"
