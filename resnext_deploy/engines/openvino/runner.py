"""OpenVINO runner: one compiled model and its infer request behind the common ``Runner`` interface."""

from __future__ import annotations

from typing import Any

import numpy as np

from resnext_deploy.engines.base import Runner, TensorSpec
from resnext_deploy.engines.openvino.config import effective_properties


def _spec(port: Any) -> TensorSpec:
    shape = tuple(d.get_length() if d.is_static else -1 for d in port.get_partial_shape())
    return TensorSpec(shape, np.dtype(port.get_element_type().to_dtype()))


class OpenVinoRunner(Runner):
    """Runs a compiled model; ``start_mode`` is ``cached`` (imported) or ``compiled``, ``start_reason`` says why."""

    backend = "openvino"

    def __init__(
        self, compiled: Any, io_names: tuple[list[str], list[str]], *, start_mode: str, start_reason: str,
        startup_seconds: float, keep_alive: Any = None,
    ) -> None:
        """``io_names``: the graph's own input and output names (compiling adds aliases such as a Cast's name);
        ``keep_alive``: memory the compiled model uses in place (the mapped blob), held as long as the runner."""
        inputs, outputs = io_names
        super().__init__({name: _spec(compiled.input(name)) for name in inputs}, list(outputs))
        self.compiled = compiled
        self._keep_alive = keep_alive
        self.start_mode = start_mode
        self.start_reason = start_reason
        self.startup_seconds = startup_seconds
        self._request: Any = None

    @property
    def inference_precision(self) -> str:
        """The float type the compiled model computes in (``f32``, ``bf16``, ``f16``)."""

        return effective_properties(self.compiled).get("INFERENCE_PRECISION_HINT", "?")

    def activate(self) -> None:
        self._request = self.compiled.create_infer_request()

    def deactivate(self) -> None:
        self._request = None

    def _run(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self._request.infer(feed)
        return {name: np.array(self._request.get_tensor(name).data, copy=True) for name in self._outputs}
