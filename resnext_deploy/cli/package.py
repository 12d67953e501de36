"""`resnext-deploy package`: an export directory -> an edge bundle (.tar.gz) or a Triton model repository."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from resnext_deploy import console
from resnext_deploy.bundle import package_directory
from resnext_deploy.bundle.signing import fingerprint, load_private_key
from resnext_deploy.bundle.triton import package_triton
from resnext_deploy.cli._errors import handles_errors
from resnext_deploy.cli._options import (
    BundleFormat,
    BundleFormatOpt,
    BundleOutputOpt,
    ExportDirArg,
    ForceOpt,
    TritonPlanOpt,
)
from resnext_deploy.errors import UsageError


@handles_errors
def package(
    directory: ExportDirArg,
    output: BundleOutputOpt,
    format: BundleFormatOpt = BundleFormat.tar,  # noqa: A002 - the option is --format
    plan: TritonPlanOpt = False,
    force: ForceOpt = False,
    model_name: Annotated[str | None, typer.Option("--model-name", help="triton: the model's name in the repository "
                                                   "[default: MODEL-PRECISION].", show_default=False)] = None,
    max_batch_size: Annotated[int | None, typer.Option("--max-batch-size", min=1, help="triton: max_batch_size of the "
                                                       "config [default: 32, or the engine profile's maximum].",
                                                       show_default=False)] = None,
    triton_release: Annotated[str | None, typer.Option("--triton-release", help="triton --plan: the Triton release "
                                                       "that will serve the plan (e.g. 25.12): warn when the TensorRT "
                                                       "it ships is not the one that built the plan.",
                                                       show_default=False)] = None,
    sign: Annotated[Path | None, typer.Option("--sign", help="tar: sign the bundle with this Ed25519 private key (PEM or "
                                              "OpenSSH; passphrase from $RESNEXT_DEPLOY_KEY_PASSPHRASE): adds "
                                              "manifest.json.sig.", show_default=False)] = None,
) -> None:
    """Pack export DIRECTORY (ONNX, precision artifact, engines, calibration records, report) with a checksummed manifest."""
    if format is BundleFormat.triton:

        if sign is not None:

            raise UsageError("--sign applies to --format tar bundles", hint="sign the tar bundle; Triton serves the files as they are")
        with console.stage(f"write Triton model repository {output}"):
            result = package_triton(directory, output, plan=plan, force=force, model_name=model_name,
                                    max_batch_size=max_batch_size, triton_release=triton_release)
        for warning in result.warnings:
            console.warn(warning)
        console.out.print(f"Triton model [bold]{result.model_name}[/] ({result.platform}, max_batch_size {result.max_batch_size})")
        console.out.print(f"  repository: {result.repository}")
        console.out.print(f"  serve with: {result.serve_command}")
        return

    for flag, given in (("--plan", plan), ("--model-name", model_name), ("--max-batch-size", max_batch_size),
                        ("--triton-release", triton_release)):
        if given:
            console.warn(f"{flag} only applies to --format triton; ignored")
    with console.stage(f"pack {directory} into {output}"):
        result = package_directory(directory, output, force=force, sign=sign)
    manifest = result.manifest
    console.out.print(f"bundle [bold]{result.path}[/] ({result.size / 1e6:.1f} MB, {len(manifest['files']) + 1} files)")
    console.out.print(f"  model: {manifest['model']['name']} {manifest['precision']}; "
                      f"targets: {', '.join(t['backend'] for t in manifest['targets']) or 'none (build on the device)'}")
    console.out.print(f"  sha256: {result.sha256}")
    if sign is not None:

        console.out.print(f"  signed by {fingerprint(load_private_key(sign).public_key())} (manifest.json.sig)")
    if manifest["model"].get("random_weights"):
        console.warn("the bundled model has RANDOM weights: its predictions mean nothing")
