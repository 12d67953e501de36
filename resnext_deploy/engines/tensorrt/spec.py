"""TensorRT's registry entry: NVIDIA GPUs, engines checked against their sidecar before use."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from resnext_deploy.engines.base import EngineFile, EngineSpec, TritonEntry, target_header
from resnext_deploy.engines.cuda import cuda_devices
from resnext_deploy.engines.tensorrt.artifact import check_tensorrt_artifact
from resnext_deploy.engines.tensorrt.backend import INSTALL_HINT, TensorRTBackend
from resnext_deploy.engines.tensorrt.sidecar import TrtEnvironment, check_engine, read_sidecar, source_onnx_for
from resnext_deploy.engines.tensorrt.triton import check_target as triton_check_target
from resnext_deploy.engines.tensorrt.triton import serve_args as triton_serve_args
from resnext_deploy.errors import DeployError
from resnext_deploy.layout import PRECISIONS

NAME = "tensorrt"
SIDECAR_SUFFIX = ".engine.json"


def _make() -> Any:
    return TensorRTBackend()


def check_artifact(onnx_path: Path) -> None:
    """Refuse Q/DQ TensorRT's parser cannot take (the CPU recipe), naming the command that makes the right artifact."""

    check_tensorrt_artifact(onnx_path)


def target_record(sidecar: dict[str, Any], sidecar_name: str) -> dict[str, Any]:
    """The bundle's record of an engine: TensorRT version, GPU, profile and compatibility flags."""
    return target_header(NAME, sidecar, sidecar_name, "engine") | {
        "tensorrt_version": sidecar.get("tensorrt_version"),
        "gpu": sidecar.get("gpu"),
        "profile": sidecar.get("profile"),
        "hardware_compatibility_level": sidecar.get("hardware_compatibility_level"),
        "version_compatible": (sidecar.get("options") or {}).get("version_compatible", False),
    }


def target_mismatch(directory: Path, target: dict[str, Any]) -> str | None:
    """Why the recorded engine cannot run on this machine (version, GPU, damaged file), or None."""

    engine = directory / target["artifact"]
    try:
        check_engine(engine, read_sidecar(engine), TrtEnvironment.current(), engine.read_bytes())
    except DeployError as exc:
        return exc.message
    return None


def read_engine_file(path: Path) -> EngineFile:
    """A ``.engine`` file and its sidecar (``InputError`` naming the rebuild when either is missing or unreadable)."""
    sidecar = read_sidecar(path)
    profile = next(iter((sidecar.get("profile") or {}).values()), {})
    inputs, outputs = sidecar.get("inputs") or [{}], sidecar.get("outputs") or [{}]
    return EngineFile(
        backend=NAME, path=path, source_onnx=source_onnx_for(path, sidecar), precision=str(sidecar.get("precision") or "fp32"),
        metadata=dict(sidecar.get("model_metadata") or {}), input_name=str(inputs[0].get("name") or "input"),
        output_name=str(outputs[0].get("name") or "logits"), max_batch=int((profile.get("max") or [0])[0]) or None,
    )


def details() -> dict[str, Any]:
    """The GPU TensorRT builds for and the TensorRT release (asked only when it is usable)."""
    import tensorrt

    return {"tensorrt_version": tensorrt.__version__,
            "gpus": [f"{gpu.name} (compute capability {gpu.compute_capability})" for gpu in cuda_devices()]}


def describe_target(target: dict[str, Any]) -> str:
    """``TensorRT 10.9 on NVIDIA L4 (compute capability 8.9)``."""
    gpu = target.get("gpu") or {}
    return f"TensorRT {target.get('tensorrt_version')} on {gpu.get('name')} (compute capability {gpu.get('compute_capability')})"


SPEC = EngineSpec(
    name=NAME,
    title="TensorRT",
    make=_make,
    install_hint=INSTALL_HINT,
    default_recipe="tensorrt",
    sidecar_suffix=SIDECAR_SUFFIX,
    loads_from_onnx=False,
    target_record=target_record,
    target_mismatch=target_mismatch,
    describe_target=describe_target,
    rebuild_hint=f"resnext-deploy build BUNDLE --backend {NAME}",
    # a plan runs only on the GPU and TensorRT it was built for, so it is served only when asked (--plan)
    triton=TritonEntry(model_file="model.plan", serves="engine", platform="tensorrt_plan", instance_kind="KIND_GPU",
                       default_when_recorded=False, serve_args=triton_serve_args, check_target=triton_check_target),
    auto_precisions=PRECISIONS,
    packages=("tensorrt", "tensorrt-cu13", "tensorrt-cu12", "polygraphy"),
    check_artifact=check_artifact,
    module="tensorrt",
    details=details,
    engine_suffix=".engine",
    read_engine_file=read_engine_file,
    int8_recipes=("tensorrt",),  # symmetric signed INT8, zero points 0, float bias: what onnx-tensorrt parses
    fallback_precisions=lambda: ("fp16",),  # the recipe's FP16 float regions: a strongly typed network runs them so
)
