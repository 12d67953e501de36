"""Builders and runners behind one interface: ONNX Runtime (CPU default) and TensorRT (GPU).

Importing this package loads no backend library; ``onnxruntime``, ``tensorrt``, ``polygraphy``
and CUDA are imported inside the functions that need them.
"""

from resnext_deploy.engines.base import Backend, BuildOptions, BuiltArtifact, Runner, TensorSpec
from resnext_deploy.engines.select import BACKEND_NAMES, get_backend, resolve_backend

__all__ = [
    "BACKEND_NAMES",
    "Backend",
    "BuildOptions",
    "BuiltArtifact",
    "Runner",
    "TensorSpec",
    "get_backend",
    "resolve_backend",
]
