"""`resnext-deploy build`: on the target device, build (or reuse) the engine for this machine inside the bundle."""

from __future__ import annotations

from resnext_deploy import console
from resnext_deploy.cli._errors import handles_errors
from resnext_deploy.cli._options import Backend, BackendOpt, BundleArg, UnpackDirOpt
from resnext_deploy.cli.groups import EngineArgs, uses


@handles_errors
@uses(engine=EngineArgs)
def build(bundle: BundleArg, engine: EngineArgs, backend: BackendOpt = Backend.auto, output: UnpackDirOpt = None) -> None:
    """Build the engine for this machine from BUNDLE's ONNX, or reuse the bundled one when its recorded target matches.

    The engine options (batch profile, threads, TensorRT workspace, timing cache) apply to a new build.
    """
    from resnext_deploy.bundle import build_bundle

    with console.stage(f"build {bundle} for this machine"):
        result = build_bundle(bundle, backend.value, output, options=engine.to_build_options())
    console.err.print(f"[dim]{result.backend_reason}[/]")
    verb = "reused" if result.action == "reused" else "built"
    console.out.print(f"{verb} [bold]{result.backend}[/] engine {result.artifact} ({result.reason})")
    console.out.print(f"  bundle folder: {result.directory} (manifest.json updated)" if result.action == "built"
                      else f"  bundle folder: {result.directory}")
