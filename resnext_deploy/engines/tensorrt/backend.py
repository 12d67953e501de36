"""TensorRT backend: strongly typed build through Polygraphy's loaders, engine + sidecar on disk."""

from __future__ import annotations

import dataclasses
import importlib.util
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from resnext_deploy.engines.base import Backend, BuildOptions, BuiltArtifact, model_metadata
from resnext_deploy.engines.cuda import cuda_devices, driver_cuda_version
from resnext_deploy.engines.tensorrt.artifact import check_tensorrt_artifact
from resnext_deploy.engines.tensorrt.cuda_runtime import cuda_runtime_problem, make_cudart_loadable
from resnext_deploy.engines.tensorrt.driver import driver_problem, tensorrt_wheel_cuda
from resnext_deploy.engines.tensorrt.failures import log_tail, tensorrt_error
from resnext_deploy.engines.tensorrt.plan import TrtBuildPlan, engine_path_for, make_plan
from resnext_deploy.engines.tensorrt.runner import TensorRTRunner
from resnext_deploy.engines.tensorrt.sidecar import (
    SIDECAR_FORMAT,
    TrtEnvironment,
    check_engine,
    read_sidecar,
    save_engine,
)
from resnext_deploy.engines.tensorrt.support import jetson_release, tensorrt_version_problem
from resnext_deploy.engines.tensorrt.timing_cache import drop_stale_timing_cache
from resnext_deploy.errors import DeployError, NotAvailableError
from resnext_deploy.files import sha256_file

INSTALL_HINT = "pip install 'resnext-deploy[tensorrt]' on a machine with an NVIDIA GPU, or use --backend onnxruntime"


class TensorRTBackend(Backend):
    """NVIDIA GPUs: engines built from strongly typed ONNX (FP32, FP16 or Q/DQ INT8)."""

    name = "tensorrt"

    def availability(self) -> tuple[bool, str, str]:
        """(available, why, what to do): TensorRT imports, a CUDA device exists, Polygraphy finds the CUDA runtime."""
        if importlib.util.find_spec("tensorrt") is None:
            return False, "tensorrt not installed", INSTALL_HINT
        try:
            import tensorrt
        except Exception as exc:  # a broken install raises ImportError or OSError from its libraries
            return False, f"tensorrt does not import ({exc})", INSTALL_HINT
        too_old_trt = tensorrt_version_problem(str(getattr(tensorrt, "__version__", "?")), jetson_release())
        if too_old_trt is not None:
            return False, too_old_trt[0], too_old_trt[1]
        devices = cuda_devices()
        if not devices:
            return False, "no CUDA device", INSTALL_HINT
        too_old = driver_problem(driver_cuda_version(), tensorrt_wheel_cuda())
        if too_old is not None:
            return False, too_old[0], too_old[1]
        make_cudart_loadable()  # a CUDA 13 wheel's runtime, which Polygraphy's own search misses
        problem = cuda_runtime_problem()
        if problem is not None:
            return False, problem[0], problem[1]
        return True, f"TensorRT {tensorrt.__version__} on {devices[0].name}", ""

    def available(self) -> tuple[bool, str]:
        """Whether TensorRT can run here, and why not (``availability`` adds what to do)."""
        ok, why, _ = self.availability()
        return ok, why

    def require_available(self) -> None:
        """Raise ``NotAvailableError`` (exit 2) saying what is missing when TensorRT cannot run here."""
        ok, reason, hint = self.availability()
        if not ok:
            raise NotAvailableError(f"TensorRT backend is not available: {reason}", hint=hint)

    def check_artifact(self, onnx_path: Path) -> None:
        """Refuse (exit 2, with the command that makes the right one) an INT8 artifact TensorRT cannot parse."""
        check_tensorrt_artifact(Path(onnx_path))

    def build(self, onnx_path: Path, options: BuildOptions, output_dir: Path | None = None) -> BuiltArtifact:
        """Build ``model.<precision>.engine`` and its sidecar; nothing is left behind if the build fails."""
        plan = make_plan(Path(onnx_path), options, Path(output_dir) if output_dir is not None else None)
        self.check_artifact(plan.onnx_path)
        self.require_available()
        env = TrtEnvironment.current()
        stale_cache = None
        if plan.timing_cache is not None:

            plan.timing_cache.parent.mkdir(parents=True, exist_ok=True)
            stale_cache = drop_stale_timing_cache(plan.timing_cache)
        sidecar = sidecar_record(plan, env, options, stale_cache)
        record = save_engine(plan.engine_path, build_engine_bytes(plan.to_polygraphy(), plan.onnx_path.name), sidecar)
        return BuiltArtifact(self.name, plan.engine_path, plan.onnx_path, plan.sidecar_path, record)

    def load(self, artifact_or_path: BuiltArtifact | Path, options: BuildOptions | None = None) -> TensorRTRunner:
        """Check the engine against its sidecar and this machine, then hand it to a runner."""
        if isinstance(artifact_or_path, BuiltArtifact):
            engine_path = artifact_or_path.path
        else:
            engine_path = Path(artifact_or_path)
            if engine_path.suffix == ".onnx":
                engine_path = engine_path_for(engine_path, options or BuildOptions())
        sidecar = read_sidecar(engine_path)
        engine_bytes = engine_path.read_bytes()
        self.require_available()
        check_engine(engine_path, sidecar, TrtEnvironment.current(), engine_bytes)
        return TensorRTRunner(engine_path, engine_bytes, sidecar)


def sidecar_record(plan: TrtBuildPlan, env: TrtEnvironment, options: BuildOptions, stale_cache: str | None) -> dict[str, Any]:
    """What the sidecar records about a build (the engine's sha256 and size are added once it is written)."""
    return {
        "format": SIDECAR_FORMAT,
        "backend": TensorRTBackend.name,
        **env.to_dict(),
        "precision": plan.precision,
        "strongly_typed": plan.strongly_typed,
        "tf32": plan.tf32,
        "profile": plan.profile_dict(),
        "inputs": [dataclasses.asdict(i) for i in plan.inputs],
        "outputs": [dataclasses.asdict(o) for o in plan.outputs],
        "hardware_compatibility_level": plan.hardware_compatibility_level,
        "timing_cache": None if plan.timing_cache is None else {"path": str(plan.timing_cache), "rebuilt": stale_cache},
        "source_onnx": {
            "path": os.path.relpath(plan.onnx_path, plan.engine_path.parent),
            "sha256": sha256_file(plan.onnx_path),
        },
        "options": options.to_dict(),
        "model_metadata": model_metadata(plan.onnx_path),
    }


def build_engine_bytes(loader: Callable[[], Any], onnx_name: str) -> Iterator[Any]:
    """Call the Polygraphy loader chain lazily, as ``save_engine``'s chunk source, with its errors made clear:
    out of GPU memory, a driver problem and a graph the parser refuses each get their own hint (``failures``)."""
    from polygraphy.exception import PolygraphyException

    with log_tail() as log:
        try:
            engine = loader()
        except DeployError:
            raise
        except PolygraphyException as exc:
            raise tensorrt_error(f"TensorRT could not build {onnx_name}", exc, log.text) from None
        except (RuntimeError, AttributeError, TypeError, MemoryError) as exc:  # from TensorRT's bindings
            raise tensorrt_error(
                f"TensorRT failed while building {onnx_name}", exc, log.text, default=NotAvailableError,
                default_hint="check TensorRT's log above and that this TensorRT release supports the options used; "
                "run with --debug for the traceback",
            ) from None
    yield engine
