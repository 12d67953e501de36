"""ONNX Runtime's registry entry: the CPU default that runs everywhere."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from resnext_deploy.engines.base import MAX_SIDECAR_BYTES, EngineSpec, TritonEntry, target_header
from resnext_deploy.engines.onnxruntime.backend import SIDECAR_SUFFIX, OnnxRuntimeBackend
from resnext_deploy.engines.onnxruntime.environment import OrtEnvironment, checked_providers, session_providers
from resnext_deploy.files import read_json
from resnext_deploy.layout import PRECISIONS

NAME = "onnxruntime"


def _make() -> Any:
    return OnnxRuntimeBackend()


def target_record(sidecar: dict[str, Any], sidecar_name: str) -> dict[str, Any]:
    """The bundle's record of a saved optimized graph: ORT version, providers and CPU it was optimized for."""
    return target_header(NAME, sidecar, sidecar_name, "optimized_graph") | {
        "onnxruntime_version": sidecar.get("onnxruntime_version"),
        "providers": sidecar.get("providers"),
        "cpu": sidecar.get("cpu"),
    }


def target_mismatch(directory: Path, target: dict[str, Any]) -> str | None:
    """Why the recorded optimized graph cannot be used on this machine, or None."""

    sidecar = read_json(directory / target["sidecar"], target["sidecar"], None, MAX_SIDECAR_BYTES)
    if not isinstance(sidecar, dict):
        return f"{target['sidecar']} is not an engine record"
    return OrtEnvironment.current().mismatch(sidecar)


def details() -> dict[str, Any]:
    """The providers a session really gets here, and those the installed wheel lists."""
    import onnxruntime as ort

    return {"providers": list(session_providers()), "listed_providers": list(ort.get_available_providers())}
def check_options(options: Any) -> None:
    """Execution providers asked for (``BuildOptions.providers``) must exist in this ONNX Runtime build."""
    if options.providers is not None:
        checked_providers(tuple(options.providers))


def describe_target(target: dict[str, Any]) -> str:
    """``ONNX Runtime 1.31.1 on AMD EPYC (CPUExecutionProvider)``."""
    cpu = target.get("cpu") or {}
    return (f"ONNX Runtime {target.get('onnxruntime_version')} on {cpu.get('model') or cpu.get('machine')} "
            f"({', '.join(target.get('providers') or [])})")


SPEC = EngineSpec(
    name=NAME,
    title="ONNX Runtime",
    make=_make,
    install_hint="pip install resnext-deploy (it depends on onnxruntime, or onnxruntime-gpu on x86-64 Linux)",
    default_recipe="onnxruntime",
    sidecar_suffix=SIDECAR_SUFFIX,
    loads_from_onnx=True,
    target_record=target_record,
    target_mismatch=target_mismatch,
    describe_target=describe_target,
    rebuild_hint=f"resnext-deploy build BUNDLE --backend {NAME}",
    triton=TritonEntry(model_file="model.onnx", serves="onnx", platform="onnxruntime_onnx"),
    auto_precisions=PRECISIONS,
    packages=("onnxruntime", "onnxruntime-gpu"),
    module="onnxruntime",
    details=details,
    check_options=check_options,
)
