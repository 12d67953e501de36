"""Deserializing an engine ourselves, so host code runs only in engines that need it.

Polygraphy's ``EngineFromBytes`` sets ``IRuntime.engine_host_code_allowed = True`` on every
runtime it is given (so it can load version-compatible engines), which made a runtime built
with host code disallowed pointless. Here the runtime allows host code only for an engine whose
sidecar says it was built version-compatible (that engine embeds its lean runtime as host code);
any other engine that carries host code fails to deserialize instead of running it.
The ResNeXt graphs need no TensorRT plugins, so ``init_libnvinfer_plugins`` is not called.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from resnext_deploy.errors import NotAvailableError


class EngineDeserializationError(NotAvailableError):
    """TensorRT returned no engine: built by another TensorRT or for another GPU, damaged, or host code refused."""


def deserialize(runtime: Any, engine_bytes: bytes, allow_host_code: bool, label: str = "engine", version: str = "") -> Any:
    """``runtime.deserialize_cuda_engine`` with host code allowed only when asked; None becomes a clear error."""
    if allow_host_code:
        try:
            runtime.engine_host_code_allowed = True
        except AttributeError:
            raise NotAvailableError(
                f"TensorRT {version} cannot run version-compatible engines (no IRuntime.engine_host_code_allowed)",
                hint="use TensorRT 8.6 or newer, or rebuild without --version-compatible",
            ) from None
    engine = runtime.deserialize_cuda_engine(engine_bytes)  # the engine keeps its runtime alive
    if engine is None:
        raise EngineDeserializationError(
            f"TensorRT could not deserialize {label} (its log above says why): built by another TensorRT "
            "or for another GPU, damaged, or it embeds host code, which only --version-compatible engines may"
        )
    return engine


@dataclasses.dataclass(frozen=True)
class EngineDeserializer:
    """Callable handed to Polygraphy's ``TrtRunner``: returns the ``trt.ICudaEngine`` of ``engine_bytes``."""

    engine_bytes: bytes = dataclasses.field(repr=False)
    allow_host_code: bool = False
    label: str = "engine"

    def __call__(self) -> Any:
        import tensorrt as trt
        from polygraphy.backend.trt import util as trt_util

        runtime = trt.Runtime(trt_util.get_trt_logger())
        return deserialize(runtime, self.engine_bytes, self.allow_host_code, self.label, trt.__version__)
