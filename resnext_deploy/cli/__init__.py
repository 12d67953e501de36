"""The `resnext-deploy` command: this module only composes the commands."""

from __future__ import annotations

import typer

from resnext_deploy.cli.export import export
from resnext_deploy.cli.models import models

app = typer.Typer(
    name="resnext-deploy",
    help="Export ResNeXt classifiers to ONNX, FP16/INT8, ONNX Runtime and TensorRT; verify, gate and package them.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
    rich_markup_mode="rich",
)
app.command()(models)
app.command()(export)


def main() -> None:
    app()
