"""TensorRT runner: Polygraphy's ``TrtRunner`` behind the common interface, checked against the profile.

The feed is checked once, by the common ``Runner`` (names, dtypes, shapes, the profile's batch range),
so Polygraphy's own per-call input check is skipped (``infer(check_inputs=False)``), and the debug
tensors Polygraphy switches on at activation are switched off again (our engines mark none; it
keeps the listener out of the timed call). What is timed is still a host-buffer round trip:
host-to-device copy, execution, device-to-host copy and synchronization, not the GPU compute time
``trtexec`` reports, and every latency figure says so (``latency_scope``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from resnext_deploy.engines.base import Runner, TensorSpec
from resnext_deploy.engines.tensorrt.cuda_runtime import cuda_runtime_problem
from resnext_deploy.engines.tensorrt.failures import log_tail, tensorrt_error
from resnext_deploy.engines.tensorrt.runtime import EngineDeserializationError, EngineDeserializer
from resnext_deploy.engines.tensorrt.sidecar import rebuild_hint
from resnext_deploy.errors import DeployError, InputError, NotAvailableError

LATENCY_SCOPE = (
    "end-to-end, host buffers: host-to-device copy, TensorRT execution, device-to-host copy and synchronization "
    "(not GPU compute time, which trtexec reports)"
)


class TensorRTRunner(Runner):
    """Runs a serialized engine; input specs and profile come from its sidecar, so feeds are checked first."""

    backend = "tensorrt"
    latency_scope = LATENCY_SCOPE

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

    @property
    def batch_range(self) -> tuple[int, int | None]:
        """The batch sizes every dynamic input's profile accepts."""
        ranges = [(shapes["min"][0], shapes["max"][0]) for shapes in self.profile.values()]
        if not ranges:
            return 1, None
        return max(low for low, _ in ranges), min(high for _, high in ranges)

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

    def polygraphy_runner(self) -> Any:
        """Polygraphy's ``TrtRunner`` (not yet active) over our own deserializer (see ``runtime.py``)."""
        from polygraphy.backend.trt import TrtRunner

        allow_host_code = bool(self.sidecar.get("options", {}).get("version_compatible"))
        return TrtRunner(EngineDeserializer(self._engine_bytes, allow_host_code, self.engine_path.name), name=self.engine_path.name)

    def activate(self) -> None:
        self._trt = self.polygraphy_runner()
        try:
            self._trt.activate()
        except EngineDeserializationError as exc:
            self._trt = None
            raise NotAvailableError(exc.message, hint=rebuild_hint(self.engine_path, self.sidecar)) from None
        except DeployError:
            self._trt = None
            raise
        except Exception as exc:  # PolygraphyException, OSError from the CUDA runtime, ... after TensorRT's own log
            self._trt = None
            raise activation_error(self.engine_path, exc) from None
        context = getattr(self._trt, "context", None)
        if hasattr(context, "set_all_tensors_debug_state"):
            context.set_all_tensors_debug_state(False)

    def deactivate(self) -> None:
        if self._trt is not None:
            self._trt.deactivate()
            self._trt = None

    def _run(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        with log_tail() as log:
            try:
                outputs = self._trt.infer(feed, check_inputs=False)
            except DeployError:
                raise
            except Exception as exc:  # execute_async_v3 returned False, a CUDA copy failed: PolygraphyException
                raise tensorrt_error(
                    f"TensorRT inference failed on {self.engine_path.name} (batch {next(iter(feed.values())).shape[0]})",
                    exc, log.text, default=NotAvailableError,
                    default_hint="see TensorRT's log above; if the engine was built elsewhere, "
                    + rebuild_hint(self.engine_path, self.sidecar),
                ) from None
        return {name: np.array(outputs[name], copy=True) for name in self._outputs}


def activation_error(engine_path: Path, exc: Exception) -> NotAvailableError:
    """Why the runner could not start: a missing CUDA runtime is said as such, not as a stale engine."""

    problem = cuda_runtime_problem()
    if problem is not None:
        return NotAvailableError(problem[0], hint=problem[1])
    return NotAvailableError(
        f"TensorRT could not start engine {engine_path.name}: {type(exc).__name__}: {exc}",
        hint="see TensorRT's log above; run with --debug for the traceback",
    )
