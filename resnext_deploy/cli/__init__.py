"""The `resnext-deploy` command: this module only composes the commands."""

from __future__ import annotations

from typing import Annotated

import typer

from resnext_deploy import console, environment
from resnext_deploy.cli.build import build
from resnext_deploy.cli.doctor import doctor
from resnext_deploy.cli.export import export
from resnext_deploy.cli.inspect_bundle import inspect_bundle
from resnext_deploy.cli.models import models
from resnext_deploy.cli.package import package
from resnext_deploy.cli.predict import predict
from resnext_deploy.cli.sensitivity import sensitivity
from resnext_deploy.cli.sweep import sweep
from resnext_deploy.cli.verify import verify

app = typer.Typer(
    name="resnext-deploy",
    help="Export ResNeXt classifiers to ONNX, FP16/INT8, ONNX Runtime and TensorRT; verify, gate and package them.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
    rich_markup_mode="markdown",  # help texts show "[default: ...]" and TOML "[tables]" literally
)


def _print_version(value: bool) -> None:
    if value:

        typer.echo(f"resnext-deploy {environment.toolchain_version()}")
        raise typer.Exit()


@app.callback()
def main_options(
    version: Annotated[
        bool, typer.Option("--version", help="Print the version and exit.", callback=_print_version, is_eager=True)
    ] = False,
    verbose: Annotated[int, typer.Option("--verbose", "-v", count=True, help="Say more: -v debug logs and tracebacks of "
                                                                             "internal errors, -vv also the libraries' logs.")] = 0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only warnings, errors and results.")] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Everything -vv shows.")] = False,
) -> None:
    """Export ResNeXt classifiers to ONNX, FP16/INT8, ONNX Runtime and TensorRT; verify, gate and package them."""

    console.configure(2 if debug else -1 if quiet and not verbose else min(verbose, 2))


app.command()(models)
app.command()(export)
app.command()(verify)
app.command()(sensitivity)
app.command()(package)
app.command("inspect")(inspect_bundle)
app.command()(build)
app.command()(predict)
app.command()(sweep)
app.command()(doctor)


def main() -> None:
    app()
