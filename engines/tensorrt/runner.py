"""TensorRT runner: Polygraphy's ``TrtRunner`` behind the common interface, checked against the profile."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from resnext_deploy.engines.base import Runner, TensorSpec
from resnext_deploy.errors import InputError, NotAvailableError


class TensorRTRunner(Runner):
    """Runs a serialized engine; input specs and profile come from its sidecar, so feeds are checked first."""

    backend = "tensorrt"

    def __init__(self, engine_path: Path, engine_bytes: bytes, sidecar: dict[str, Any]) -> None:
        super().__init__(
            {i["name"]: TensorSpec(tuple(i["shape"]), np.dtype(i["dtype"])) for i in sidecar["inputs"]},
            [o["name"] for o in sidecar["outputs"]],
        )
        self.engine_path = engine_path
        self._engine_bytes = engine_bytes
        self.sidecar = sidecar
        self._trt: Any = None

    @property
    def profile(self) -> dict[str, dict[str, list[int]]]:
        """Input -> {min, opt, max} shapes the engine accepts."""
        return self.sidecar["profile"]

    def check_batch(self, feed: dict[str, np.ndarray]) -> None:
        for name, array in feed.items():
            shapes = self.profile.get(name)
            if shapes is None:
                continue
            low, high = shapes["min"][0], shapes["max"][0]
            if not low <= array.shape[0] <= high:
                raise InputError(
                    f"batch {array.shape[0]} for input {name!r} is outside the engine's profile {low}..{high}",
                    hint=f"split the batch, or rebuild with --min-batch/--max-batch covering {array.shape[0]}",
                )

    def activate(self) -> None:
        from polygraphy.backend.trt import EngineFromBytes, TrtRunner

        from resnext_deploy.engines.tensorrt.plan import TrustedRuntime

        allow_host_code = bool(self.sidecar.get("options", {}).get("version_compatible"))
        runtime = TrustedRuntime(allow_host_code)
        self._trt = TrtRunner(EngineFromBytes(self._engine_bytes, runtime=runtime), name=self.engine_path.name)
        try:
            self._trt.activate()
        except Exception as exc:  # PolygraphyException after TensorRT's own log of the failure
            self._trt = None
            raise NotAvailableError(
                f"TensorRT could not load engine {self.engine_path.name}: {exc}",
                hint="rebuild it on this machine with `resnext-deploy build --backend tensorrt`",
            ) from None

    def deactivate(self) -> None:
        if self._trt is not None:
            self._trt.deactivate()
            self._trt = None

    def _run(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        outputs = self._trt.infer(feed)
        return {name: np.array(outputs[name], copy=True) for name in self._outputs}
