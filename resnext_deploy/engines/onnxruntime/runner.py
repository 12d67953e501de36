"""ONNX Runtime runner: one InferenceSession behind the common ``Runner`` interface."""

from __future__ import annotations

from typing import Any

import numpy as np

from resnext_deploy.engines.base import Runner, TensorSpec

_ORT_TYPES: dict[str, type] = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(int8)": np.int8,
    "tensor(uint8)": np.uint8,
    "tensor(int32)": np.int32,
    "tensor(int64)": np.int64,
    "tensor(bool)": np.bool_,
}


def _dim(value: Any) -> int:
    return value if isinstance(value, int) and value >= 0 else -1


class OnnxRuntimeRunner(Runner):
    """Runs a session created by the backend; ``start_mode``/``start_reason`` say how it started."""

    backend = "onnxruntime"

    def __init__(self, session: Any, *, start_mode: str, start_reason: str, startup_seconds: float) -> None:
        specs = {
            node.name: TensorSpec(tuple(_dim(d) for d in node.shape), np.dtype(_ORT_TYPES.get(node.type, np.float32)))
            for node in session.get_inputs()
        }
        super().__init__(specs, [node.name for node in session.get_outputs()])
        self.session = session
        self.start_mode = start_mode  # "saved-optimized" or "cold"
        self.start_reason = start_reason
        self.startup_seconds = startup_seconds

    @property
    def providers(self) -> list[str]:
        """Providers the session really uses."""
        return list(self.session.get_providers())

    def _run(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return dict(zip(self._outputs, self.session.run(self._outputs, feed)))
