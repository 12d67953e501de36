"""TensorRT backend: strongly typed build through Polygraphy's loaders, engine + sidecar on disk."""

from __future__ import annotations

import dataclasses
import importlib.util
import os
from pathlib import Path
from typing import Any

from resnext_deploy.engines.base import BuildOptions, BuiltArtifact, model_metadata
from resnext_deploy.engines.cuda import cuda_devices
from resnext_deploy.engines.tensorrt.plan import engine_path_for, make_plan
from resnext_deploy.engines.tensorrt.runner import TensorRTRunner
from resnext_deploy.engines.tensorrt.sidecar import SIDECAR_FORMAT, TrtEnvironment, check_engine, read_sidecar, save_engine
from resnext_deploy.errors import InputError, NotAvailableError
from resnext_deploy.files import sha256_file

INSTALL_HINT = "pip install 'resnext-deploy[tensorrt]' on a machine with an NVIDIA GPU, or use --backend onnxruntime"


class TensorRTBackend:
    """NVIDIA GPUs: engines built from strongly typed ONNX (FP32, FP16 or Q/DQ INT8)."""

    name = "tensorrt"

    def available(self) -> tuple[bool, str]:
        if importlib.util.find_spec("tensorrt") is None:
            return False, "tensorrt not installed"
        try:
            import tensorrt
        except Exception as exc:  # a broken install raises ImportError or OSError from its libraries
            return False, f"tensorrt does not import ({exc})"
        devices = cuda_devices()
        if not devices:
            return False, "no CUDA device"
        return True, f"TensorRT {tensorrt.__version__} on {devices[0].name}"

    def require_available(self) -> None:
        """Raise ``NotAvailableError`` (exit 2) naming the extra to install when TensorRT cannot run here."""
        ok, reason = self.available()
        if not ok:
            raise NotAvailableError(f"TensorRT backend is not available: {reason}", hint=INSTALL_HINT)

    def build(self, onnx_path: Path, options: BuildOptions, output_dir: Path | None = None) -> BuiltArtifact:
        """Build ``model.<precision>.engine`` and its sidecar; nothing is left behind if the build fails."""
        plan = make_plan(Path(onnx_path), options, Path(output_dir) if output_dir is not None else None)
        self.require_available()
        env = TrtEnvironment.current()
        if plan.timing_cache is not None:
            plan.timing_cache.parent.mkdir(parents=True, exist_ok=True)
        loader = plan.to_polygraphy()

        def engine_chunks() -> Any:
            from polygraphy.exception import PolygraphyException

            try:
                yield loader()
            except PolygraphyException as exc:
                raise InputError(
                    f"TensorRT could not build {plan.onnx_path.name}: {exc}",
                    hint="check the log above; the ONNX must parse strongly typed (FP32, FP16 or Q/DQ INT8)",
                ) from None

        sidecar = {
            "format": SIDECAR_FORMAT,
            "backend": self.name,
            **env.to_dict(),
            "precision": plan.precision,
            "strongly_typed": plan.strongly_typed,
            "profile": plan.profile_dict(),
            "inputs": [dataclasses.asdict(i) for i in plan.inputs],
            "outputs": [dataclasses.asdict(o) for o in plan.outputs],
            "hardware_compatibility_level": plan.hardware_compatibility_level,
            "source_onnx": {
                "path": os.path.relpath(plan.onnx_path, plan.engine_path.parent),
                "sha256": sha256_file(plan.onnx_path),
            },
            "options": options.to_dict(),
            "model_metadata": model_metadata(plan.onnx_path),
        }
        record = save_engine(plan.engine_path, engine_chunks(), sidecar)
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
