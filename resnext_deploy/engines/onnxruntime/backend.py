"""ONNX Runtime backend: optimize once, save the optimized graph and a manifest, start fast later.

"Build" creates a session with ``ORT_ENABLE_ALL`` and ``optimized_model_filepath`` so the optimized
graph lands next to the artifact (``model.int8.onnx`` -> ``model.int8.ort-opt.onnx``) with a sidecar
(``model.int8.onnxruntime.json``). "Load" uses the saved graph with optimizations disabled when the
sidecar matches this ORT version, providers, CPU and source file; otherwise it starts cold and says why.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from resnext_deploy.engines.base import (
    MAX_SIDECAR_BYTES,
    Backend,
    BuildOptions,
    BuiltArtifact,
    file_beside,
    model_metadata,
    precision_of,
    require_onnx_file,
)
from resnext_deploy.engines.onnxruntime.environment import OrtEnvironment
from resnext_deploy.engines.onnxruntime.runner import OnnxRuntimeRunner
from resnext_deploy.engines.records import FileRecord, Text
from resnext_deploy.errors import DeployError, InputError, OutputError, check_record
from resnext_deploy.files import atomic_path, read_json, sha256_file, write_json

LOG = logging.getLogger(__name__)
SIDECAR_FORMAT = "resnext-deploy/onnxruntime-engine/1"
SESSION_SETTINGS = {
    "graph_optimization_level": "ORT_ENABLE_ALL",
    "execution_mode": "ORT_SEQUENTIAL",
    "inter_op_num_threads": 1,
}


SIDECAR_SUFFIX = ".onnxruntime.json"
OPTIMIZED_SUFFIX = ".ort-opt.onnx"


class Sidecar(BaseModel):
    """The fields of ``model.<p>.onnxruntime.json`` a load relies on, typed and bounded before any is used."""

    model_config = ConfigDict(extra="allow", strict=True)

    format: Literal["resnext-deploy/onnxruntime-engine/1"]
    onnxruntime_version: Text
    providers: Annotated[list[Text], Field(max_length=16)]
    cpu: dict[Text, Text]
    source_onnx: FileRecord
    optimized_graph: FileRecord


def optimized_path(onnx_path: Path, output_dir: Path | None = None) -> Path:
    """``dir/model.int8.onnx`` -> ``output_dir/model.int8.ort-opt.onnx``."""
    return (output_dir or onnx_path.parent) / f"{onnx_path.stem}{OPTIMIZED_SUFFIX}"


def sidecar_path(onnx_path: Path, output_dir: Path | None = None) -> Path:
    """``dir/model.int8.onnx`` -> ``output_dir/model.int8.onnxruntime.json``."""
    return (output_dir or onnx_path.parent) / f"{onnx_path.stem}{SIDECAR_SUFFIX}"


def session_options(options: BuildOptions, *, optimize: bool, save_to: Path | None = None) -> Any:
    """Session options set deliberately: full or no graph optimization, threads, sequential execution."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = (
        ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimize else ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    )
    so.intra_op_num_threads = options.intra_op_threads
    so.inter_op_num_threads = SESSION_SETTINGS["inter_op_num_threads"]
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    if save_to is not None:
        so.optimized_model_filepath = os.fspath(save_to)
        so.log_severity_level = 3  # ORT warns the saved graph is CPU-specific; the manifest records the CPU
    return so


def _create_session(path: Path, so: Any, providers: tuple[str, ...]) -> Any:
    import onnxruntime as ort

    try:
        return ort.InferenceSession(os.fspath(path), so, providers=list(providers))
    except Exception as exc:  # ORT raises InvalidProtobuf, Fail, InvalidGraph... for damaged files
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(
            f"ONNX Runtime cannot load {path}: {first_line}",
            hint="the file is truncated or not a valid ONNX model; re-export it",
        ) from None


def _create_saving_session(source: Path, so: Any, env: OrtEnvironment, save_to: Path) -> Any:
    """A session that saves its optimized graph; when that fails, say whether the source or the save was at fault.

    ORT reports a failed write of the optimized graph (disk full, file size limit) as a protobuf
    error indistinguishable from a damaged source, so the source is loaded once more without saving.
    """
    import shutil

    try:
        return _create_session(source, so, env.providers)
    except InputError as exc:
        _create_session(source, session_options(BuildOptions(), optimize=False), env.providers)  # raises if the source is bad
        free = shutil.disk_usage(save_to.parent).free
        raise OutputError(
            f"ONNX Runtime could not save the optimized graph to {save_to.parent} ({exc.message.split(': ', 1)[-1]}); "
            f"{source.name} itself loads fine; {free:,} bytes free there",
            hint="free some space (or raise the file size limit) and build again",
        ) from None


def _file_record(path: Path, relative_to: Path) -> dict[str, Any]:
    stat = path.stat()
    return {
        "path": os.path.relpath(path, relative_to),
        "sha256": sha256_file(path),
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
    }


def _matches(path: Path, record: dict[str, Any]) -> bool:
    """Content check by sha256, skipped when size and mtime are exactly those recorded."""
    try:
        stat = path.stat()
    except OSError:
        return False
    if stat.st_size != record.get("size"):
        return False
    if stat.st_mtime_ns == record.get("mtime_ns"):
        return True
    return sha256_file(path) == record.get("sha256")


class OnnxRuntimeBackend(Backend):
    """The embedded default: ONNX Runtime on CPU, plus CUDA/TensorRT providers where they really work."""

    name = "onnxruntime"

    def available(self) -> tuple[bool, str]:
        try:
            import onnxruntime  # noqa: F401
        except ImportError as exc:
            return False, f"onnxruntime does not import ({exc})"
        return True, "onnxruntime " + onnxruntime.__version__

    def build(self, onnx_path: Path, options: BuildOptions, output_dir: Path | None = None) -> BuiltArtifact:
        """Optimize the graph once, save it and an engine manifest beside it (both atomically)."""
        source = require_onnx_file(onnx_path)
        out_dir = Path(output_dir) if output_dir is not None else source.parent
        opt_path, manifest_path = optimized_path(source, out_dir), sidecar_path(source, out_dir)
        env = OrtEnvironment.current(options.providers)
        with atomic_path(opt_path) as tmp:
            start = time.perf_counter()
            session = _create_saving_session(source, session_options(options, optimize=True, save_to=tmp), env, tmp)
            seconds = time.perf_counter() - start
            providers = tuple(session.get_providers())
            del session
            if not tmp.is_file() or tmp.stat().st_size == 0:
                raise InputError(f"ONNX Runtime did not save an optimized graph for {source}")
        metadata: dict[str, Any] = {
            "format": SIDECAR_FORMAT,
            "backend": self.name,
            **env.to_dict(),
            "providers": list(providers),
            "precision": precision_of(source, options),
            "source_onnx": _file_record(source, out_dir),
            "optimized_graph": _file_record(opt_path, out_dir),
            "session": {**SESSION_SETTINGS, "intra_op_num_threads": options.intra_op_threads},
            "options": options.to_dict(),
            "cold_start_seconds": round(seconds, 4),
            "model_metadata": model_metadata(source),
        }
        write_json(manifest_path, metadata)
        return BuiltArtifact(self.name, opt_path, source, manifest_path, metadata)

    def load(self, artifact_or_path: BuiltArtifact | Path, options: BuildOptions | None = None) -> OnnxRuntimeRunner:
        """A runner from the saved optimized graph when its manifest matches, else from the source ONNX."""
        options = options or BuildOptions()
        source, manifest_path = self._locate(artifact_or_path)
        env = OrtEnvironment.current(options.providers)
        manifest, reason = _read_manifest(manifest_path)
        opt_path: Path | None = None
        if manifest is not None:
            stem = manifest_path.name.removesuffix(SIDECAR_SUFFIX)
            hint = f"rebuild it: `resnext-deploy build {source or stem + '.onnx'} --backend {self.name}`, or delete {manifest_path.name}"
            opt_path = file_beside(manifest_path, manifest["optimized_graph"]["path"], stem + OPTIMIZED_SUFFIX,
                                   "its optimized graph", hint)
            if source is None:
                source = file_beside(manifest_path, manifest["source_onnx"]["path"], stem + ".onnx", "its source ONNX",
                                     "load the ONNX file itself, with its engine beside it")
            reason = _manifest_mismatch(manifest, env, source, opt_path)
        if source is None or not source.is_file():
            raise InputError(f"ONNX file not found: {source or manifest_path}", hint="run `resnext-deploy export` first")
        if reason is None and opt_path is not None:
            start = time.perf_counter()
            try:
                session = _create_session(opt_path, session_options(options, optimize=False), env.providers)
            except InputError as exc:
                reason = f"the saved optimized graph does not load ({exc.message})"
            else:
                return OnnxRuntimeRunner(
                    session,
                    start_mode="saved-optimized",
                    start_reason=f"saved optimized graph {opt_path.name}",
                    startup_seconds=time.perf_counter() - start,
                )
        LOG.debug("onnxruntime: cold start from %s (%s)", source.name, reason)  # the summary says it once
        require_onnx_file(source)
        start = time.perf_counter()
        session = _create_session(source, session_options(options, optimize=True), env.providers)
        return OnnxRuntimeRunner(
            session, start_mode="cold", start_reason=str(reason), startup_seconds=time.perf_counter() - start
        )

    @staticmethod
    def _locate(artifact_or_path: BuiltArtifact | Path) -> tuple[Path | None, Path]:
        """(source ONNX or None when only the manifest names it, manifest path)."""
        if isinstance(artifact_or_path, BuiltArtifact):
            return artifact_or_path.source_onnx, artifact_or_path.sidecar
        path = Path(artifact_or_path)
        if path.name.endswith(SIDECAR_SUFFIX):
            return None, path
        if path.name.endswith(OPTIMIZED_SUFFIX):
            stem = path.name[: -len(OPTIMIZED_SUFFIX)]
            return None, path.with_name(f"{stem}{SIDECAR_SUFFIX}")
        return path, sidecar_path(path)


def _read_manifest(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    """The manifest, or None and why it cannot be used (missing, not ours, a field missing, mistyped or unbounded)."""
    if not path.is_file():
        return None, f"no engine manifest {path.name}; run `resnext-deploy build --backend onnxruntime` to save one"
    try:
        manifest = read_json(path, f"engine manifest {path.name}", None, MAX_SIDECAR_BYTES)
        if not isinstance(manifest, dict) or manifest.get("format") != SIDECAR_FORMAT:
            return None, f"{path.name} is not an onnxruntime engine manifest"
        check_record(Sidecar, manifest, f"engine manifest {path.name}", None)
    except OSError:
        return None, f"engine manifest {path.name} is unreadable"
    except DeployError as exc:
        return None, exc.message
    return manifest, None


def _manifest_mismatch(manifest: dict[str, Any], env: OrtEnvironment, source: Path, opt_path: Path) -> str | None:
    """Why the saved optimized graph cannot be used here, or None."""
    mismatch = env.mismatch(manifest)
    if mismatch is not None:
        return mismatch
    if not _matches(source, manifest["source_onnx"]):
        return f"{source.name} changed since the optimized graph was saved"
    if not opt_path.is_file():
        return f"saved optimized graph {opt_path.name} is missing"
    if not _matches(opt_path, manifest["optimized_graph"]):
        return f"saved optimized graph {opt_path.name} does not match its manifest sha256"
    return None
