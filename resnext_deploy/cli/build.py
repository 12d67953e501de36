"""`resnext-deploy build`: on the target device, build (or reuse) the engine for this machine inside a bundle,
or build one from a bare ONNX file, as trtexec and polygraphy do."""

from __future__ import annotations

from resnext_deploy import console
from resnext_deploy.bundle import build_bundle
from resnext_deploy.cli._errors import handles_errors
from resnext_deploy.cli._options import Backend, BackendOpt, BundleArg, UnpackDirOpt
from resnext_deploy.cli.groups import EngineArgs, TrustArgs, uses
from resnext_deploy.engines.select import select_for
from resnext_deploy.metadata import claimed_precision, read_metadata


@handles_errors
@uses(engine=EngineArgs, trust=TrustArgs)
def build(bundle: BundleArg, engine: EngineArgs, trust: TrustArgs, backend: BackendOpt = Backend.auto,
          output: UnpackDirOpt = None) -> None:
    """Build the engine for this machine from BUNDLE's ONNX (the artifact made with that backend's recipe when the
    bundle holds several), or reuse the bundled one when its recorded target matches.
    BUNDLE may also be a bare .onnx file: the engine and its sidecar are written beside it.

    The engine options (batch profile, threads, TensorRT workspace, timing cache, TF32) apply to a new build.
    """

    if bundle.suffix == ".onnx" and bundle.is_file():
        _build_bare(bundle, engine, backend.value, output)
        return

    with console.stage(f"build {bundle} for this machine"):
        result = build_bundle(bundle, backend.value, output, options=engine.to_build_options(), policy=trust.to_policy())
    console.err.print(f"[dim]{result.unpacked}[/]")
    console.err.print(f"[dim]{result.backend_reason}[/]")
    verb = "reused" if result.action == "reused" else "built"
    console.out.print(f"{verb} [bold]{result.backend}[/] engine {result.artifact} ({result.reason})")
    console.out.print(f"  bundle folder: {result.directory} (manifest.json updated)" if result.action == "built"
                      else f"  bundle folder: {result.directory}")


def _build_bare(onnx_path, engine: EngineArgs, backend: str, output) -> None:  # type: ignore[no-untyped-def]
    """Engine + sidecar for a bare ONNX file (precision from its metadata or name), beside it or in --output."""
    precision = claimed_precision(read_metadata(onnx_path), onnx_path.name)  # hostile metadata: exit 2
    chosen, why = select_for(backend, onnx_path, precision)  # an artifact it cannot take: exit 2 before anything else
    console.err.print(f"[dim]{why}[/]")
    with console.stage(f"build the {chosen.name} engine for {onnx_path.name}"):
        built = chosen.build(onnx_path, engine.to_build_options(precision), output_dir=output)
    console.out.print(f"built [bold]{chosen.name}[/] engine {built.path}")
    console.out.print(f"  sidecar: {built.sidecar}")
