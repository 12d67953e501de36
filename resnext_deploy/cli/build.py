"""`resnext-deploy build`: on the target device, build (or reuse) the engine for this machine inside the bundle."""

from __future__ import annotations

from resnext_deploy import console
from resnext_deploy.cli._errors import handles_errors
from resnext_deploy.cli._options import Backend, BackendOpt, BundleArg, UnpackDirOpt


@handles_errors
def build(bundle: BundleArg, backend: BackendOpt = Backend.auto, output: UnpackDirOpt = None) -> None:
    """Build the engine for this machine from BUNDLE's ONNX, or reuse the bundled one when its recorded target matches."""
    from resnext_deploy.bundle import build_bundle

    with console.stage(f"build {bundle} for this machine"):
        result = build_bundle(bundle, backend.value, output)
    console.err.print(f"[dim]{result.backend_reason}[/]")
    verb = "reused" if result.action == "reused" else "built"
    console.out.print(f"{verb} [bold]{result.backend}[/] engine {result.artifact} ({result.reason})")
    console.out.print(f"  bundle folder: {result.directory} (manifest.json updated)" if result.action == "built"
                      else f"  bundle folder: {result.directory}")
