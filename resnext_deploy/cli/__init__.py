"""The `resnext-deploy` command: this module only composes the commands."""

from __future__ import annotations

import typer

from resnext_deploy.cli.build import build
from resnext_deploy.cli.export import export
from resnext_deploy.cli.inspect_bundle import inspect_bundle
from resnext_deploy.cli.models import models
from resnext_deploy.cli.package import package
from resnext_deploy.cli.predict import predict
from resnext_deploy.cli.verify import verify

app = typer.Typer(
    name="resnext-deploy",
    help="Export ResNeXt classifiers to ONNX, FP16/INT8, ONNX Runtime and TensorRT; verify, gate and package them.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
    rich_markup_mode="markdown",  # help texts show "[default: ...]" and TOML "[tables]" literally
)
app.command()(models)
app.command()(export)
app.command()(verify)
app.command()(package)
app.command("inspect")(inspect_bundle)
app.command()(build)
app.command()(predict)


def main() -> None:
    app()
