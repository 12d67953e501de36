"""What an ONNX Runtime optimized graph depends on: ORT version, providers and the CPU.

ORT's docs warn that a graph saved after ``ORT_ENABLE_ALL`` (layout and NCHWc transforms) is
specific to the hardware it was optimized on, so the sidecar records these and a load compares them.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

from resnext_deploy.engines.cuda import has_cuda_device
from resnext_deploy.environment import cpu_fingerprint
from resnext_deploy.errors import UsageError

CPU_PROVIDER = "CPUExecutionProvider"
GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")


def _probe_model() -> bytes:
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "provider_probe",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


@functools.cache
def session_providers() -> tuple[str, ...]:
    """Providers for real sessions: GPU ones only when a session really gets them, CPU always.

    The onnxruntime-gpu wheel lists CUDA and TensorRT in ``get_available_providers()`` on machines
    without a GPU, so each is tried on a one-node session and kept only if ``get_providers()``
    shows it. Without a CUDA device the (noisy, failing) probe is skipped.
    """
    import onnxruntime as ort

    listed = [name for name in GPU_PROVIDERS if name in ort.get_available_providers()]
    if not listed or not has_cuda_device():
        return (CPU_PROVIDER,)
    probe, options = _probe_model(), ort.SessionOptions()
    options.log_severity_level = 3
    working = []
    for name in listed:
        try:
            session = ort.InferenceSession(probe, options, providers=[name, CPU_PROVIDER])
        except Exception:  # a provider whose libraries are missing may raise instead of falling back
            continue
        if name in session.get_providers():
            working.append(name)
    return (*working, CPU_PROVIDER)


def checked_providers(requested: tuple[str, ...]) -> tuple[str, ...]:
    """``requested`` when this ONNX Runtime build has every one of them, else a ``UsageError`` naming those it has."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    unknown = [name for name in requested if name not in available]
    if unknown or not requested:
        raise UsageError(f"ONNX Runtime {ort.__version__} has no execution provider {', '.join(unknown) or '(none given)'}",
                         hint=f"use one of: {', '.join(available)}, or 'auto' (every working one, GPU first)")
    return tuple(requested)


@dataclasses.dataclass(frozen=True)
class OrtEnvironment:
    """The runtime facts a saved optimized graph must match."""

    onnxruntime_version: str
    providers: tuple[str, ...]
    cpu: dict[str, str]

    @classmethod
    def current(cls, providers: tuple[str, ...] | None = None) -> OrtEnvironment:
        """This process's ORT version, working providers (or the ``providers`` asked for) and CPU."""
        import onnxruntime as ort

        chosen = session_providers() if providers is None else checked_providers(providers)
        return cls(ort.__version__, chosen, cpu_fingerprint())

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready view for the sidecar."""
        return {"onnxruntime_version": self.onnxruntime_version, "providers": list(self.providers), "cpu": self.cpu}

    def mismatch(self, recorded: dict[str, Any]) -> str | None:
        """Why a sidecar's environment differs from this one, or None when it matches."""
        if recorded.get("onnxruntime_version") != self.onnxruntime_version:
            return f"ONNX Runtime {recorded.get('onnxruntime_version')} optimized it, this is {self.onnxruntime_version}"
        if list(recorded.get("providers", [])) != list(self.providers):
            return f"it was optimized for providers {recorded.get('providers')}, this machine has {list(self.providers)}"
        cpu = recorded.get("cpu", {})
        if cpu != self.cpu:
            return f"it was optimized on another CPU ({cpu.get('model') or cpu.get('machine')!s})"
        return None
