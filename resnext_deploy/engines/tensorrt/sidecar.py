"""Engine sidecars: what an engine was built with, checked before TensorRT ever sees the file.

A serialized engine only runs on the TensorRT version and GPU architecture it was built for
(unless built version- or hardware-compatible); TensorRT's own error for a mismatch is a raw
deserialization failure, so the loader compares the sidecar first and says how to rebuild.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt

from resnext_deploy.engines.base import MAX_SIDECAR_BYTES, file_beside
from resnext_deploy.engines.cuda import cuda_devices
from resnext_deploy.engines.records import Sha256, Text
from resnext_deploy.engines.tensorrt.plan import MIN_HARDWARE_COMPATIBLE_CC
from resnext_deploy.errors import DeployError, InputError, NotAvailableError, check_record
from resnext_deploy.files import atomic_open, read_json, write_json
from resnext_deploy.layout import BUNDLE_MANIFEST_NAME as MANIFEST_NAME
from resnext_deploy.layout import is_plain_name

SIDECAR_FORMAT = "resnext-deploy/tensorrt-engine/1"


class _Engine(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)

    path: Text
    sha256: Sha256
    size: Annotated[StrictInt, Field(ge=1)]


class _Gpu(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)

    name: Text | None = None
    compute_capability: Text


class _Tensor(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)

    name: Text
    shape: Annotated[list[StrictInt], Field(max_length=8)] = []
    dtype: Text = "float32"


class Sidecar(BaseModel):
    """The fields of ``model.<p>.engine.json`` a load relies on, typed and bounded before any is used."""

    model_config = ConfigDict(extra="allow", strict=True)

    format: Literal["resnext-deploy/tensorrt-engine/1"]
    tensorrt_version: Text
    gpu: _Gpu
    engine: _Engine
    inputs: Annotated[list[_Tensor], Field(min_length=1, max_length=64)]
    outputs: Annotated[list[_Tensor], Field(min_length=1, max_length=64)]
    profile: dict[Text, Any] = {}


@dataclasses.dataclass(frozen=True)
class TrtEnvironment:
    """The TensorRT version and GPU an engine is built on or loaded on."""

    tensorrt_version: str
    gpu_name: str
    compute_capability: str

    @classmethod
    def current(cls) -> TrtEnvironment:
        """This process's TensorRT and first visible CUDA device."""
        import tensorrt as trt

        devices = cuda_devices()
        if not devices:
            raise NotAvailableError("no CUDA device", hint="run TensorRT engines on a machine with an NVIDIA GPU")
        return cls(trt.__version__, devices[0].name, devices[0].compute_capability)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready view for the sidecar."""
        return {"tensorrt_version": self.tensorrt_version, "gpu": {"name": self.gpu_name, "compute_capability": self.compute_capability}}


def sidecar_path_for(engine_path: Path) -> Path:
    """``model.int8.engine`` -> ``model.int8.engine.json``."""
    return engine_path.with_name(engine_path.name + ".json")


def source_onnx_for(engine_path: Path, sidecar: dict[str, Any] | None = None) -> Path:
    """The ONNX an engine was built from: its sidecar's record, else ``model.int8.engine`` -> ``model.int8.onnx``."""
    recorded = ((sidecar or {}).get("source_onnx") or {}).get("path")
    if is_plain_name(recorded):  # a sidecar names only files beside it
        return engine_path.parent / str(recorded)
    stem = engine_path.name.removesuffix(".engine")
    return engine_path.parent / (stem.removesuffix(".fp32") + ".onnx")


def rebuild_hint(engine_path: Path, sidecar: dict[str, Any] | None = None) -> str:
    """How to make a fresh engine for this machine: `build` on the bundle folder, or on the ONNX it came from."""

    folder = engine_path.parent
    if (folder / MANIFEST_NAME).is_file():
        return f"rebuild it on this machine: `resnext-deploy build {folder} --backend tensorrt`"
    return f"rebuild it on this machine: `resnext-deploy build {source_onnx_for(engine_path, sidecar)} --backend tensorrt`"


def save_engine(engine_path: Path, engine_chunks: Iterable[Any], sidecar: dict[str, Any]) -> dict[str, Any]:
    """Write the engine atomically while hashing it, then its sidecar; return the sidecar written.

    An exception while the engine is produced leaves neither file behind, and an old sidecar
    next to a new engine fails the sha256 check, so nothing half-built ever looks finished.
    """
    digest, size = hashlib.sha256(), 0
    with atomic_open(engine_path, "wb") as handle:
        for chunk in engine_chunks:
            view = memoryview(chunk).cast("B")
            handle.write(view)
            digest.update(view)
            size += view.nbytes
    if size == 0:
        engine_path.unlink(missing_ok=True)
        raise InputError(f"TensorRT produced an empty engine for {engine_path.name}")
    record = {**sidecar, "engine": {"path": engine_path.name, "sha256": digest.hexdigest(), "size": size}}
    write_json(sidecar_path_for(engine_path), record)
    return record


def read_sidecar(engine_path: Path) -> dict[str, Any]:
    """The engine's sidecar, or ``InputError`` when the engine or sidecar is missing or unreadable."""
    sidecar_path = sidecar_path_for(engine_path)
    if not engine_path.is_file():
        raise InputError(f"TensorRT engine not found: {engine_path}", hint=rebuild_hint(engine_path))
    if not sidecar_path.is_file():
        raise InputError(
            f"engine {engine_path.name} has no sidecar {sidecar_path.name}, so it cannot be checked against this machine",
            hint=rebuild_hint(engine_path),
        )
    where = f"engine sidecar {sidecar_path}"
    try:
        sidecar = read_json(sidecar_path, where, rebuild_hint(engine_path), MAX_SIDECAR_BYTES)
        if not isinstance(sidecar, dict) or sidecar.get("format") != SIDECAR_FORMAT:
            raise InputError(f"{where} is not a TensorRT engine sidecar", hint=rebuild_hint(engine_path))
        check_record(Sidecar, sidecar, where, rebuild_hint(engine_path))
    except OSError:
        raise InputError(f"{where} is unreadable", hint=rebuild_hint(engine_path)) from None
    except DeployError as exc:
        raise InputError(exc.message, hint=rebuild_hint(engine_path)) from None
    file_beside(sidecar_path, sidecar["engine"]["path"], engine_path.name, "its engine", rebuild_hint(engine_path))
    return sidecar


def _version(text: str) -> tuple[int, ...]:
    parts = []
    for piece in text.split("."):
        digits = "".join(ch for ch in piece if ch.isdigit())
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts)


def _cc(text: str) -> tuple[int, ...]:
    return _version(text)


def check_engine(engine_path: Path, sidecar: dict[str, Any], env: TrtEnvironment, engine_bytes: bytes) -> None:
    """Raise a clear error when ``engine_bytes`` or ``env`` do not fit the sidecar; return when they do."""
    recorded = sidecar["engine"]
    if len(engine_bytes) != recorded.get("size") or hashlib.sha256(engine_bytes).hexdigest() != recorded["sha256"]:
        raise InputError(
            f"engine {engine_path.name} does not match its sidecar sha256 (truncated, damaged or replaced)",
            hint=rebuild_hint(engine_path, sidecar),
        )
    built_version = str(sidecar["tensorrt_version"])
    if built_version != env.tensorrt_version:
        later = _version(env.tensorrt_version) >= _version(built_version)
        if not (sidecar.get("options", {}).get("version_compatible") and later):
            raise NotAvailableError(
                f"engine {engine_path.name} was built with TensorRT {built_version}; this machine has "
                f"TensorRT {env.tensorrt_version}"
                + ("" if sidecar.get("options", {}).get("version_compatible") else " and it is not version-compatible"),
                hint=rebuild_hint(engine_path, sidecar) + ", or build with --version-compatible to run on later TensorRT releases",
            )
    built_cc = str(sidecar["gpu"]["compute_capability"])
    if built_cc != env.compute_capability:
        hardware_ok = (
            sidecar.get("options", {}).get("hardware_compatible")
            and _cc(built_cc) >= MIN_HARDWARE_COMPATIBLE_CC
            and _cc(env.compute_capability) >= MIN_HARDWARE_COMPATIBLE_CC
        )
        if not hardware_ok:
            raise NotAvailableError(
                f"engine {engine_path.name} was built for {sidecar['gpu'].get('name')} (compute capability {built_cc}); "
                f"this GPU is {env.gpu_name} (compute capability {env.compute_capability})",
                hint=rebuild_hint(engine_path, sidecar) + ", or build with --hardware-compatible (Ampere and newer)",
            )
