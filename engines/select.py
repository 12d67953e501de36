"""Pick a backend by name; ``auto`` prefers TensorRT where it really can run and says why."""

from __future__ import annotations

from resnext_deploy.engines.base import Backend
from resnext_deploy.errors import UsageError

BACKEND_NAMES = ("auto", "onnxruntime", "tensorrt")


def _make(name: str) -> Backend:
    if name == "onnxruntime":
        from resnext_deploy.engines.onnxruntime import OnnxRuntimeBackend

        return OnnxRuntimeBackend()
    from resnext_deploy.engines.tensorrt import TensorRTBackend

    return TensorRTBackend()


def resolve_backend(name: str) -> tuple[Backend, str]:
    """The backend for ``name`` and a one-line reason, e.g. ``auto: onnxruntime (tensorrt not installed)``.

    ``tensorrt`` where TensorRT or a GPU is missing raises ``NotAvailableError`` naming the extra.
    """
    if name not in BACKEND_NAMES:
        raise UsageError(f"unknown backend {name!r}", hint=f"use one of: {', '.join(BACKEND_NAMES)}")
    if name == "auto":
        tensorrt = _make("tensorrt")
        ok, why = tensorrt.available()
        if ok:
            return tensorrt, f"auto: tensorrt ({why})"
        return _make("onnxruntime"), f"auto: onnxruntime ({why})"
    backend = _make(name)
    if name == "tensorrt":
        backend.require_available()  # type: ignore[attr-defined]
    else:
        ok, why = backend.available()
        if not ok:
            from resnext_deploy.errors import NotAvailableError

            raise NotAvailableError(f"ONNX Runtime backend is not available: {why}", hint="pip install resnext-deploy")
    return backend, f"{name}: requested"


def get_backend(name: str) -> Backend:
    """The backend for ``name`` (``auto``, ``onnxruntime`` or ``tensorrt``); see ``resolve_backend``."""
    return resolve_backend(name)[0]
