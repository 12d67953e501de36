"""`resnext-deploy predict`: a bundle's, a bare .onnx's or an engine's model on image files; top-k classes."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from resnext_deploy import console
from resnext_deploy.bundle.bare import bare_source, is_bare_model
from resnext_deploy.bundle.device import bundle_source
from resnext_deploy.bundle.open import open_bundle
from resnext_deploy.bundle.predict import check_images, run_predictions
from resnext_deploy.cli._errors import handles_errors
from resnext_deploy.cli._options import Backend, BackendOpt, ImagesArg, JsonOpt, TopOpt
from resnext_deploy.cli.groups import TrustArgs, uses
from resnext_deploy.errors import UsageError

ModelFileArg = Annotated[
    Path, typer.Argument(help="A bundle (.tar.gz from `resnext-deploy package`, or its unpacked folder), or a bare "
                              ".onnx or .engine file (its metadata gives preprocessing and classes).", show_default=False)
]
BareModelOpt = Annotated[
    str | None, typer.Option("--model", help="Bare file without our metadata: the zoo model whose preprocessing and "
                             "classes to use.", show_default=False)
]


@contextlib.contextmanager
def _source(path: Path, model: str | None, trust: TrustArgs) -> Iterator[tuple[Any, Any]]:
    """(prediction source, signature status or None) of a bundle or of a bare model file."""
    policy = trust.to_policy()
    if path.is_file() and is_bare_model(path):
        if policy.trusted_keys:
            raise UsageError("--trusted-key and --require-signature apply to bundles; a bare model file is not signed",
                             hint="package the export (`resnext-deploy package --sign-key ...`) to check who made it")
        yield bare_source(path, model), None
        return
    if model is not None:
        raise UsageError("--model applies to a bare .onnx or .engine file only", hint="a bundle records its own model")
    with open_bundle(path, policy) as opened:
        yield bundle_source(opened), opened.signature


@handles_errors
@uses(trust=TrustArgs)
def predict(
    model_file: ModelFileArg, images: ImagesArg, trust: TrustArgs, top: TopOpt = 5, json_output: JsonOpt = False,
    backend: BackendOpt = Backend.auto, model: BareModelOpt = None,
) -> None:
    """Classify IMAGES with MODEL_FILE and print the top classes with softmax probabilities.

    A bundle's checksums (and signature, with --trusted-key) are verified first; `auto` runs the engine
    the bundle records when it fits this machine. Only files a bundle's manifest lists are opened: an engine
    sidecar naming any other file is refused (exit 2).
    """
    check_images(images, top)
    with _source(model_file, model, trust) as (source, signature):
        result = run_predictions(source, images, top=top, backend=backend.value)
    for warning in result.warnings:
        console.warn(warning)
    if json_output:
        payload = {"model_file": str(model_file), "kind": source.kind,
                   "bundle": str(model_file) if source.kind == "bundle" else None,
                   "precision": source.precision, "backend": result.backend, "backend_reason": result.reason,
                   "signature": signature.to_dict() if signature else None,
                   "warnings": result.warnings, "predictions": [p.to_dict() for p in result.predictions]}
        print(json.dumps(payload, indent=2))  # plain: rich's JSON highlighting takes ~90 KB of memory per prediction
        return
    console.err.print(f"[dim]{escape(result.reason)}[/]", soft_wrap=True)  # one line, however long
    if signature is not None and signature.signed:
        console.err.print(f"[dim]{signature.note}[/]")
    for prediction in result.predictions:
        console.out.print(f"[bold]{prediction.image}[/]")
        for rank, (index, label, probability) in enumerate(prediction.top, start=1):
            console.out.print(f"  {rank}. {probability:7.2%}  {label} [dim](class {index})[/]")
