"""Builders and runners behind one interface, one folder per backend, registered in ``registry.py``.

Importing this package loads no backend library; ``onnxruntime``, ``openvino``, ``tensorrt``,
``polygraphy`` and CUDA are imported inside the functions that need them.
"""

from resnext_deploy.engines.base import Backend, BuildOptions, BuiltArtifact, EngineSpec, Runner, TensorSpec
from resnext_deploy.engines.registry import (
    DEFAULT_BACKEND,
    REGISTRY,
    backend_names,
    default_recipe,
    get_spec,
    spec_for_sidecar,
)
from resnext_deploy.engines.select import auto_rule, resolve_backend, resolve_fallback_precision, select_for

__all__ = [
    "DEFAULT_BACKEND",
    "REGISTRY",
    "Backend",
    "BuildOptions",
    "BuiltArtifact",
    "EngineSpec",
    "Runner",
    "TensorSpec",
    "auto_rule",
    "backend_names",
    "default_recipe",
    "get_spec",
    "resolve_backend",
    "resolve_fallback_precision",
    "select_for",
    "spec_for_sidecar",
]
