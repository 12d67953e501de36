"""`resnext-deploy predict`: the bundle's model on image files, with its own preprocessing; top-k classes."""

from __future__ import annotations

import json

from resnext_deploy import console
from resnext_deploy.bundle import open_bundle, predict_images
from resnext_deploy.cli._errors import handles_errors
from resnext_deploy.cli._options import Backend, BackendOpt, BundleArg, ImagesArg, JsonOpt, TopOpt
from resnext_deploy.cli.groups import TrustArgs, uses


@handles_errors
@uses(trust=TrustArgs)
def predict(
    bundle: BundleArg, images: ImagesArg, trust: TrustArgs, top: TopOpt = 5, json_output: JsonOpt = False,
    backend: BackendOpt = Backend.auto,
) -> None:
    """Classify IMAGES with BUNDLE (checksums verified first) and print the top classes with softmax probabilities."""

    with open_bundle(bundle, trust.to_policy()) as opened:
        result = predict_images(opened, images, top=top, backend=backend.value)
        signature = opened.signature
    for warning in result.warnings:
        console.warn(warning)
    if json_output:
        payload = {"bundle": str(bundle), "backend": result.backend, "backend_reason": result.reason,
                   "signature": signature.to_dict() if signature else None,
                   "warnings": result.warnings, "predictions": [p.to_dict() for p in result.predictions]}
        print(json.dumps(payload, indent=2))  # plain: rich's JSON highlighting takes ~90 KB of memory per prediction
        return
    console.err.print(f"[dim]{result.reason}[/]")
    if signature is not None and signature.signed:
        console.err.print(f"[dim]{signature.note}[/]")
    for prediction in result.predictions:
        console.out.print(f"[bold]{prediction.image}[/]")
        for rank, (index, label, probability) in enumerate(prediction.top, start=1):
            console.out.print(f"  {rank}. {probability:7.2%}  {label} [dim](class {index})[/]")
