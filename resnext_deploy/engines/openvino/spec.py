"""OpenVINO's registry entry: x86-64 CPUs and Intel edge devices, compiled models cached next to the artifact."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from resnext_deploy.engines.base import MAX_SIDECAR_BYTES, EngineSpec, TritonEntry, target_header
from resnext_deploy.engines.openvino.backend import INSTALL_HINT, NAME, SIDECAR_SUFFIX, OpenVinoBackend
from resnext_deploy.engines.openvino.environment import OvEnvironment, reduced_float_precision
from resnext_deploy.files import read_json

# `auto` on CPU (bench/bench_all.py; docs/DESIGN.md): OpenVINO for the FP16 artifact (bf16 kernels, 0.40x
# ORT FP32 on an AVX-512-BF16 EPYC, 0.49x on the AMX Xeon) and the INT8 Q/DQ artifact (int8 grouped
# convolutions, 0.23x / 0.30x), measured on x86-64 only. FP32 stays on ONNX Runtime: strict-f32 OpenVINO was
# 0.96x on the Xeon and 0.76x at batch 1 but 1.00x at batch 8 on the EPYC, no structural gain to switch for.
AUTO_PRECISIONS = ("fp16", "int8")
AUTO_MACHINES = ("x86_64", "AMD64")


def _make() -> Any:
    return OpenVinoBackend()


def target_record(sidecar: dict[str, Any], sidecar_name: str) -> dict[str, Any]:
    """The bundle's record of a compiled model: OpenVINO build, device, CPU and the precision it computes in."""
    return target_header(NAME, sidecar, sidecar_name, "compiled_model") | {
        "openvino_version": sidecar.get("openvino_version"),
        "device": sidecar.get("device"),
        "cpu": sidecar.get("cpu"),
        "inference_precision": sidecar.get("inference_precision"),
        "config": sidecar.get("config"),
    }


def target_mismatch(directory: Path, target: dict[str, Any]) -> str | None:
    """Why the recorded compiled model cannot be imported on this machine (OpenVINO build, CPU), or None."""

    ok, why = _make().available()
    if not ok:
        return why
    sidecar = read_json(directory / target["sidecar"], target["sidecar"], None, MAX_SIDECAR_BYTES)
    if not isinstance(sidecar, dict):
        return f"{target['sidecar']} is not an engine record"
    return OvEnvironment.current().mismatch(sidecar)


def details() -> dict[str, Any]:
    """The CPU device OpenVINO sees, its capabilities and the precision the FP16 artifact computes in."""
    env = OvEnvironment.current()
    return {"device": env.device_name, "capabilities": list(env.capabilities),
            "inference_precision": {"fp32": "f32", "fp16": reduced_float_precision(env.capabilities) or "f32",
                                    "int8": "i8" if "INT8" in env.capabilities else "f32"}}


def describe_target(target: dict[str, Any]) -> str:
    """``OpenVINO 2026.4.1 on AMD EPYC (CPU, computes in bf16)``."""
    cpu = target.get("cpu") or {}
    version = str(target.get("openvino_version") or "?").split("-")[0]
    device = (target.get("device") or {}).get("name", "CPU")
    return f"OpenVINO {version} on {cpu.get('model') or cpu.get('machine')} ({device}, computes in {target.get('inference_precision')})"


def fallback_precisions() -> tuple[str, ...]:
    """The CPU's fast float type first (bf16 with AVX-512-BF16/AMX, else f16 where the device computes in it), then f32."""
    ok, _ = _make().available()
    caps = OvEnvironment.current().capabilities if ok else ()
    return tuple(name for name, cap in (("bf16", "BF16"), ("fp16", "FP16")) if cap in caps) + ("fp32",)


def triton_parameters(precision: str) -> dict[str, str]:
    """Triton OpenVINO backend parameters: our latency settings; bf16 for the FP16 artifact where the CPU has it."""
    parameters = {"PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": "1"}
    if precision == "fp16":
        parameters["HINT_BF16"] = "YES"
    return parameters


SPEC = EngineSpec(
    name=NAME,
    title="OpenVINO",
    make=_make,
    install_hint=INSTALL_HINT,
    default_recipe="openvino",
    sidecar_suffix=SIDECAR_SUFFIX,
    loads_from_onnx=True,
    target_record=target_record,
    target_mismatch=target_mismatch,
    describe_target=describe_target,
    rebuild_hint=f"resnext-deploy build BUNDLE --backend {NAME}",
    # Triton's OpenVINO backend reads ONNX itself (default_model_filename), so the repository holds the
    # precision ONNX and each server compiles for its own CPU
    triton=TritonEntry(model_file="model.onnx", serves="onnx", backend=NAME, instance_kind="KIND_CPU",
                       parameters=triton_parameters, default_model_filename="model.onnx"),
    auto_precisions=AUTO_PRECISIONS,
    auto_machines=AUTO_MACHINES,
    packages=("openvino",),
    module="openvino",
    details=details,
    fallback_precisions=fallback_precisions,
)
