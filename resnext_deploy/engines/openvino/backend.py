"""OpenVINO backend: compile once, export the compiled model next to the artifact, import it later.

"Build" reads the precision ONNX, compiles it for the CPU with settings chosen per precision
(``config.py``), and writes ``model.<p>.openvino.blob`` (``CompiledModel.export_model``) plus the
sidecar ``model.<p>.openvino.json`` (OpenVINO version, device, CPU, settings, sha256 of source and
blob). "Load" imports the blob when the sidecar matches this machine and the blob its sha256;
otherwise it compiles from the ONNX in memory and logs why (another OpenVINO or CPU, a truncated or
foreign blob). A sidecar that belongs to another ONNX file, or is not ours, is an error naming the
rebuild command. Load never writes: a bundle's files stay as its manifest lists them.
"""

from __future__ import annotations

import io
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
from resnext_deploy.engines.openvino import config as ovconfig
from resnext_deploy.engines.openvino.environment import DEVICE, OvEnvironment, core, reduced_float_precision
from resnext_deploy.engines.openvino.runner import OpenVinoRunner
from resnext_deploy.engines.records import FileRecord, Text
from resnext_deploy.errors import InputError, NotAvailableError, check_record
from resnext_deploy.files import atomic_open, read_json, sha256_bytes, sha256_file, write_json

LOG = logging.getLogger(__name__)
NAME = "openvino"
SIDECAR_FORMAT = "resnext-deploy/openvino-engine/1"
BLOB_SUFFIX = ".openvino.blob"
SIDECAR_SUFFIX = ".openvino.json"
INSTALL_HINT = (
    "pip install openvino (resnext-deploy installs it on x86-64 Linux and Windows and on Apple-silicon macOS), "
    "or use --backend onnxruntime"
)




class Sidecar(BaseModel):
    """The fields of ``model.<p>.openvino.json`` a load relies on, typed and bounded before any is used."""

    model_config = ConfigDict(extra="allow", strict=True)

    format: Literal["resnext-deploy/openvino-engine/1"]
    precision: Text
    openvino_version: Text
    device: dict[Text, Any]
    cpu: dict[Text, Text]
    config: Annotated[dict[Text, Text], Field(max_length=64)]
    inputs: Annotated[list[Text], Field(min_length=1, max_length=64)]
    outputs: Annotated[list[Text], Field(min_length=1, max_length=64)]
    source_onnx: FileRecord
    compiled_model: FileRecord


def blob_path(onnx_path: Path, output_dir: Path | None = None) -> Path:
    """``dir/model.int8.onnx`` -> ``output_dir/model.int8.openvino.blob``."""
    return (output_dir or onnx_path.parent) / f"{onnx_path.stem}{BLOB_SUFFIX}"


def sidecar_path(onnx_path: Path, output_dir: Path | None = None) -> Path:
    """``dir/model.int8.onnx`` -> ``output_dir/model.int8.openvino.json``."""
    return (output_dir or onnx_path.parent) / f"{onnx_path.stem}{SIDECAR_SUFFIX}"


def rebuild_hint(source: Path) -> str:
    """How to make a fresh compiled model for this machine."""
    return (f"rebuild it: `resnext-deploy build {source.parent / source.name} --backend {NAME}` (or "
            f"`resnext-deploy build BUNDLE --backend {NAME}` in a bundle); or delete {source.stem}{BLOB_SUFFIX} and "
            f"{source.stem}{SIDECAR_SUFFIX} to compile at every start")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__


def io_names(model: Any) -> tuple[list[str], list[str]]:
    """The graph's input and output names, read before compiling (compiled ports gain aliases)."""
    return [min(p.get_names()) for p in model.inputs], [min(p.get_names()) for p in model.outputs]


def compile_onnx(source: Path, config: dict[str, str]) -> tuple[Any, float, tuple[list[str], list[str]]]:
    """(compiled model, seconds, I/O names) for the ONNX ``source``; ``InputError`` for a file OpenVINO cannot read."""
    start = time.perf_counter()
    try:
        model = core().read_model(os.fspath(source))
    except Exception as exc:  # OpenVINO raises RuntimeError subclasses with C++ traces for damaged files
        raise InputError(f"OpenVINO cannot read {source}: {_first_line(exc)}",
                         hint="the file is truncated or not a valid ONNX model; re-export it") from None
    try:
        compiled = core().compile_model(model, DEVICE, config)
    except Exception as exc:
        raise InputError(f"OpenVINO cannot compile {source.name}: {_first_line(exc)}",
                         hint="check the ONNX model; `--backend onnxruntime` runs it without OpenVINO") from None
    return compiled, time.perf_counter() - start, io_names(model)


def _import(blob: Path, config: dict[str, str]) -> tuple[Any, Any]:
    """(compiled model, the memory map it lives on): the blob is mapped, not read and copied.

    The CPU plugin uses the weights in place from a tensor it is given, so the map must live as long
    as the compiled model (the runner holds it); copy-on-write keeps the file untouched.
    """
    import numpy as np
    import openvino as ov

    mapped = np.memmap(blob, dtype=np.uint8, mode="c")
    return core().import_model(ov.Tensor(mapped, shared_memory=True), DEVICE, config), mapped


def _file_record(path: Path, relative_to: Path, digest: str | None = None) -> dict[str, Any]:
    stat = path.stat()
    return {"path": os.path.relpath(path, relative_to), "sha256": digest or sha256_file(path), "size": stat.st_size,
            "mtime_ns": stat.st_mtime_ns}


def _same_content(path: Path, record: dict[str, Any]) -> bool:
    """Content check by sha256, skipped when size and mtime are exactly those recorded (as the ONNX Runtime backend does)."""
    stat = path.stat()
    if stat.st_size != record.get("size"):
        return False
    return stat.st_mtime_ns == record.get("mtime_ns") or sha256_file(path) == record.get("sha256")


class OpenVinoBackend(Backend):
    """x86-64 CPUs (and Intel edge devices): FP32 strictly f32, FP16 at bf16/f16 where the CPU has it, INT8 Q/DQ."""

    name = NAME

    def available(self) -> tuple[bool, str]:
        try:
            import openvino as ov
        except ModuleNotFoundError:
            return False, f"{NAME} not installed"
        except Exception as exc:  # a broken install raises ImportError or OSError from its libraries
            return False, f"{NAME} does not import ({_first_line(exc)})"
        version = ov.__version__.split("-")[0]
        try:
            devices = core().available_devices
        except Exception as exc:  # RuntimeError from a plugin that does not load
            return False, f"OpenVINO {version} does not load its plugins ({_first_line(exc)})"
        if DEVICE not in devices:
            return False, f"OpenVINO {version} sees no {DEVICE} device"
        return True, f"OpenVINO {version} on {DEVICE}"

    def require_available(self) -> None:
        """``NotAvailableError`` (exit 2) naming the install when OpenVINO cannot run here."""
        ok, why = self.available()
        if not ok:
            raise NotAvailableError(f"OpenVINO backend is not available: {why}", hint=INSTALL_HINT)

    def build(self, onnx_path: Path, options: BuildOptions, output_dir: Path | None = None) -> BuiltArtifact:
        """Compile for this CPU, export the compiled model and write its sidecar (both atomically)."""
        source = require_onnx_file(onnx_path)
        self.require_available()
        out_dir = Path(output_dir) if output_dir is not None else source.parent
        blob, sidecar = blob_path(source, out_dir), sidecar_path(source, out_dir)
        env = OvEnvironment.current()
        precision = precision_of(source, options)
        reduced = reduced_float_precision(env.capabilities)
        own = model_metadata(source)
        mixed = own.get("mixed_precision") or {}
        int8_float = ovconfig.fallback_hint(mixed.get("fallback_precision"), env.capabilities, mixed.get("float_layers"))
        settings = ovconfig.compile_config(precision, options, reduced, int8_float)
        compiled, seconds, names = compile_onnx(source, settings)
        stream = io.BytesIO()
        compiled.export_model(stream)
        data = stream.getvalue()
        if not data:
            raise InputError(f"OpenVINO exported an empty compiled model for {source.name}")
        with atomic_open(blob) as handle:
            handle.write(data)
        metadata: dict[str, Any] = {
            "format": SIDECAR_FORMAT,
            "backend": NAME,
            **env.to_dict(),
            "precision": precision,
            "inference_precision": settings["INFERENCE_PRECISION_HINT"],
            "reduced_float_precision": reduced,
            "config": settings,
            "effective": ovconfig.effective_properties(compiled),
            "inputs": names[0],
            "outputs": names[1],
            "source_onnx": _file_record(source, out_dir),
            "compiled_model": _file_record(blob, out_dir, sha256_bytes(data)),
            "options": options.to_dict(),
            "compile_seconds": round(seconds, 4),
            "model_metadata": own,
        }
        if mixed.get("float_layers"):  # read back: what the layers kept out of INT8 really run in
            metadata["float_layers_run_in"] = ovconfig.runtime_precisions(compiled, list(mixed["float_layers"]))
        write_json(sidecar, metadata)
        return BuiltArtifact(NAME, blob, source, sidecar, metadata)

    def load(self, artifact_or_path: BuiltArtifact | Path, options: BuildOptions | None = None) -> OpenVinoRunner:
        """A runner from the exported compiled model when it fits this machine, else compiled from the ONNX."""
        options = options or BuildOptions()
        started = time.perf_counter()
        source, sidecar_file = self._locate(artifact_or_path)
        self.require_available()
        sidecar = _read_sidecar(sidecar_file, source)
        if source is None:
            if sidecar is None:
                raise InputError(f"OpenVINO sidecar not found: {sidecar_file}", hint="run `resnext-deploy export` first")
            source = file_beside(sidecar_file, sidecar["source_onnx"]["path"], _stem(sidecar_file) + ".onnx",
                                 "its source ONNX", "load the ONNX file itself, with its engine beside it")
        require_onnx_file(source)
        precision = precision_of(source, options)
        if sidecar is None:
            reason = f"no compiled model {sidecar_file.name}; `resnext-deploy build` or export with --backend {NAME} saves one"
            LOG.debug("openvino: compiling %s (%s)", source.name, reason)  # the summary says it once
        else:
            _check_belongs(sidecar, sidecar_file, source, precision)
            blob = _blob_of(sidecar, sidecar_file, source)
            reason = OvEnvironment.current().mismatch(sidecar) or _blob_problem(sidecar, blob)
            if reason is None:
                try:
                    compiled, mapped = _import(blob, ovconfig.import_config(sidecar["config"], options))
                except Exception as exc:  # a foreign or damaged blob that still matched its sidecar
                    reason = f"OpenVINO cannot import {blob.name} ({_first_line(exc)})"
                else:
                    names = (sidecar["inputs"], sidecar["outputs"])
                    reason = _io_problem(compiled, names, blob)
                    if reason is None:
                        return OpenVinoRunner(compiled, names, start_mode="cached",
                                              start_reason=f"compiled model {blob.name}",
                                              startup_seconds=time.perf_counter() - started, keep_alive=mapped)
            LOG.warning("openvino: recompiling %s: %s", source.name, reason)
        capabilities = OvEnvironment.current().capabilities
        mixed = model_metadata(source).get("mixed_precision") or {}
        int8_float = ovconfig.fallback_hint(mixed.get("fallback_precision"), capabilities, mixed.get("float_layers"))
        compiled, _, names = compile_onnx(source, ovconfig.compile_config(precision, options,
                                                                          reduced_float_precision(capabilities), int8_float))
        return OpenVinoRunner(compiled, names, start_mode="compiled", start_reason=reason,
                              startup_seconds=time.perf_counter() - started)

    @staticmethod
    def _locate(artifact_or_path: BuiltArtifact | Path) -> tuple[Path | None, Path]:
        """(source ONNX, or None when only the sidecar names it; sidecar path)."""
        if isinstance(artifact_or_path, BuiltArtifact):
            return artifact_or_path.source_onnx, artifact_or_path.sidecar
        path = Path(artifact_or_path)
        for suffix in (SIDECAR_SUFFIX, BLOB_SUFFIX):
            if path.name.endswith(suffix):
                return None, path.with_name(path.name[: -len(suffix)] + SIDECAR_SUFFIX)
        return path, sidecar_path(path)


def _stem(sidecar_file: Path) -> str:
    """``model.int8.openvino.json`` -> ``model.int8``."""
    return sidecar_file.name.removesuffix(SIDECAR_SUFFIX)


def _read_sidecar(path: Path, source: Path | None) -> dict[str, Any] | None:
    """The sidecar, None when there is none, or ``InputError`` when it is not an OpenVINO engine record
    (wrong format, a field missing, mistyped or unbounded)."""
    if not path.is_file():
        return None
    hint = rebuild_hint(source or path.with_name(_stem(path) + ".onnx"))
    try:
        sidecar = read_json(path, f"OpenVINO sidecar {path}", hint, MAX_SIDECAR_BYTES)
    except OSError as exc:
        raise InputError(f"OpenVINO sidecar {path} is unreadable ({exc})", hint=hint) from None
    if not isinstance(sidecar, dict) or sidecar.get("format") != SIDECAR_FORMAT:
        raise InputError(f"{path} is not an OpenVINO engine sidecar (format {sidecar.get('format') if isinstance(sidecar, dict) else None!r})",
                         hint=hint)
    check_record(Sidecar, sidecar, f"OpenVINO sidecar {path}", hint)
    return sidecar


def _blob_of(sidecar: dict[str, Any], sidecar_file: Path, source: Path) -> Path:
    """The compiled model the sidecar names: only ``<stem>.openvino.blob`` beside it, else ``InputError``."""
    return file_beside(sidecar_file, sidecar["compiled_model"]["path"], _stem(sidecar_file) + BLOB_SUFFIX,
                       "its compiled model", rebuild_hint(source))


def _io_problem(compiled: Any, names: tuple[list[str], list[str]], blob: Path) -> str | None:
    """Why the recorded input/output names do not fit the imported model, or None."""
    have = ({n for p in compiled.inputs for n in p.get_names()}, {n for p in compiled.outputs for n in p.get_names()})
    missing = [n for want, got in zip(names, have) for n in want if n not in got]
    return f"{blob.name} has no input or output named {', '.join(map(repr, missing[:4]))} as its sidecar records" if missing else None


def _check_belongs(sidecar: dict[str, Any], sidecar_file: Path, source: Path, precision: str) -> None:
    """``InputError`` with the rebuild command when the sidecar describes another model than ``source``."""
    if not _same_content(source, sidecar["source_onnx"]):
        raise InputError(f"{sidecar_file.name} was compiled from another ONNX file than {source.name} "
                         "(the model changed since the engine was built)", hint=rebuild_hint(source))
    if sidecar.get("precision") != precision:
        raise InputError(f"{sidecar_file.name} records precision {sidecar.get('precision')}, {source.name} is {precision}",
                         hint=rebuild_hint(source))


def _blob_problem(sidecar: dict[str, Any], blob: Path) -> str | None:
    """Why the exported compiled model cannot be imported as recorded (missing, truncated, changed), or None."""
    record = sidecar["compiled_model"]
    if not blob.is_file():
        return f"compiled model {blob.name} is missing"
    if blob.stat().st_size != record.get("size"):
        return f"compiled model {blob.name} is {blob.stat().st_size} bytes, its sidecar says {record.get('size')} (truncated)"
    if not _same_content(blob, record):
        return f"compiled model {blob.name} does not match its sidecar sha256 (changed or foreign)"
    return None
