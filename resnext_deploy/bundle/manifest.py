"""manifest.json: what a bundle holds (every file with size and sha256) and what its model expects.

The manifest is the bundle's single source of truth: readers load only files it lists, and
:func:`verify_bundle` checks every listed file before anything is loaded.
"""

from __future__ import annotations

import os
import posixpath
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from resnext_deploy.bundle.schema import check_manifest_fields
from resnext_deploy.bundle.signing import SIGNATURE_NAME, SIGNED_MANIFEST_NAME
from resnext_deploy.engines.registry import sidecar_suffixes, spec_for_sidecar
from resnext_deploy.errors import InputError
from resnext_deploy.files import parse_json, read_json, sha256_file
from resnext_deploy.layout import BUNDLE_MANIFEST_NAME
from resnext_deploy.metadata import get_metadata
from resnext_deploy.onnx_io import TensorInfo, graph_inputs, graph_outputs, load_model, read_graph_io

SCHEMA = "resnext-deploy/bundle"
SCHEMA_VERSION = 1
MANIFEST_NAME = BUNDLE_MANIFEST_NAME
PREPROCESS_NAME = "preprocess.json"
CLASSES_NAME = "classes.txt"
REPACK_HINT = "re-create the bundle with `resnext-deploy package EXPORT_DIR --output BUNDLE.tar.gz`"
SOURCE_NAME = "unpacked-from.json"  # written by `build`: the sha256 of the tarball a folder was unpacked from
BOOKKEEPING = (MANIFEST_NAME, SIGNATURE_NAME, SIGNED_MANIFEST_NAME, SOURCE_NAME)  # present but never listed
MAX_MANIFEST_BYTES = 16 * 1024 * 1024
MAX_SIDECAR_BYTES = 4 * 1024 * 1024  # an engine sidecar is a few KB of JSON


def check_relative(name: str, where: str) -> str:
    """``name`` as a normalized POSIX path inside the bundle, or ``InputError`` when it could escape."""
    if not name or "\\" in name or "\x00" in name:
        raise InputError(f"{where}: invalid path {name!r} in the bundle", hint=REPACK_HINT)
    normalized = posixpath.normpath(name)
    if posixpath.isabs(name) or normalized == ".." or normalized.startswith("../") or normalized == ".":
        raise InputError(f"{where}: path {name!r} escapes the bundle directory", hint="do not use this bundle; " + REPACK_HINT)
    return normalized


def file_record(root: Path, name: str) -> dict[str, Any]:
    """``{path, size, sha256}`` of ``root/name``."""
    path = root / name
    return {"path": name, "size": path.stat().st_size, "sha256": sha256_file(path)}


@dataclass
class CheckResult:
    """Outcome of a bundle check: files verified, and warnings that did not make it fail."""

    directory: Path
    manifest: dict[str, Any]
    verified: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return True


def read_manifest(directory: Path, label: str | None = None) -> dict[str, Any]:
    """Read and check ``directory/manifest.json`` (schema, version, file list, every field readers use).

    ``label`` names the bundle in messages (the tarball, not the temporary folder it was unpacked into).
    """
    path = str(Path(directory) / MANIFEST_NAME) if label is None else f"{label}: {MANIFEST_NAME}"
    try:
        data = (Path(directory) / MANIFEST_NAME).read_bytes()
    except FileNotFoundError:
        raise InputError(f"{path} not found: this is not a resnext-deploy bundle", hint=REPACK_HINT) from None
    except OSError as exc:
        raise InputError(f"{path} cannot be read ({exc})", hint=REPACK_HINT) from None
    return parse_manifest(data, path)


def parse_manifest(data: bytes, path: str) -> dict[str, Any]:
    """The manifest in ``data``, checked: schema and version, ``{path, size, sha256}`` file records with
    paths inside the bundle, and every field readers use present, typed and bounded (``bundle.schema``)."""

    manifest = parse_json(data, path, REPACK_HINT, MAX_MANIFEST_BYTES)
    if not isinstance(manifest, dict) or manifest.get("schema") != SCHEMA:
        schema = manifest.get("schema") if isinstance(manifest, dict) else None
        raise InputError(f"{path} has unknown schema {schema!r}, expected {SCHEMA!r}", hint=REPACK_HINT)
    if manifest.get("schema_version") != SCHEMA_VERSION:
        raise InputError(
            f"{path} has {SCHEMA} version {manifest.get('schema_version')!r}; this resnext-deploy reads version {SCHEMA_VERSION}",
            hint="use the resnext-deploy release that wrote the bundle, or " + REPACK_HINT,
        )
    files = manifest.get("files")
    if not isinstance(files, list) or not all(
        isinstance(f, dict) and isinstance(f.get("path"), str) and type(f.get("size")) is int and f["size"] >= 0
        and isinstance(f.get("sha256"), str)
        for f in files
    ):
        raise InputError(f"{path}: 'files' must list {{path, size, sha256}} records", hint=REPACK_HINT)
    names = [check_relative(record["path"], str(path)) for record in files]
    if len(set(names)) != len(names) or set(names) & set(BOOKKEEPING):
        raise InputError(f"{path}: 'files' lists a path twice or a reserved name", hint=REPACK_HINT)
    check_manifest_fields(manifest, path, REPACK_HINT)
    return manifest


def _present_files(directory: Path) -> set[str]:
    """Every regular file under ``directory`` (POSIX relative paths), links and specials included as names."""
    names: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(directory, followlinks=False):
        base = Path(dirpath)
        for name in filenames + [d for d in dirnames if (base / d).is_symlink()]:
            names.add((base / name).relative_to(directory).as_posix())
    return names


def verify_bundle(
    directory: Path, manifest: dict[str, Any] | None = None, *, extra: str = "warn", label: str | None = None
) -> CheckResult:
    """Check every file the manifest lists (present, regular, size, sha256); raise ``InputError`` naming the first bad ones.

    Unlisted files are an error when ``extra == "error"`` (a packed tarball is a closed set), else a
    warning (an unpacked directory may gain editor or OS files; nothing unlisted is ever loaded).
    """
    directory = Path(directory)
    manifest = manifest if manifest is not None else read_manifest(directory, label)
    result = CheckResult(directory, manifest)
    problems: list[str] = []
    listed = set(BOOKKEEPING)
    for record in manifest["files"]:
        name = record["path"]
        listed.add(name)
        path = directory / name
        if path.is_symlink() or (path.exists() and not path.is_file()):
            problems.append(f"{name}: not a regular file")
        elif not path.exists():
            problems.append(f"{name}: missing")
        elif path.stat().st_size != record["size"]:
            problems.append(f"{name}: size {path.stat().st_size} bytes, manifest says {record['size']} (truncated or modified)")
        elif sha256_file(path) != record["sha256"]:
            problems.append(f"{name}: sha256 does not match the manifest (modified)")
        else:
            result.verified.append(name)
    unlisted = sorted(_present_files(directory) - listed)
    if unlisted:
        message = f"files not listed in {MANIFEST_NAME}: {', '.join(unlisted)}"
        if extra == "error":
            problems.append(message)
        else:
            result.warnings.append(message + " (ignored)")
    if problems:
        shown = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
        raise InputError(f"bundle {label or directory} failed its checksum check: {shown}", hint="do not deploy it; " + REPACK_HINT)
    return result


def tensor_specs(onnx_path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(input spec, output spec) of the graph's first input and output: name, shape (dim names for dynamic), dtype."""
    inputs, outputs = read_graph_io(onnx_path)
    return _spec(inputs[0]), _spec(outputs[0])


def _spec(tensor: TensorInfo) -> dict[str, Any]:
    return {"name": tensor.name, "shape": ["?" if d is None else d for d in tensor.dims], "dtype": tensor.dtype}


def onnx_facts(onnx_path: Path) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """(metadata_props, input spec, output spec) of an ONNX file, read once."""

    model = load_model(onnx_path)
    inputs, outputs = graph_inputs(model), graph_outputs(model)
    if not inputs or not outputs:
        raise InputError(f"{onnx_path.name} has no input or no output", hint=REPACK_HINT)
    return get_metadata(model), _spec(inputs[0]), _spec(outputs[0])


def target_of(directory: Path, sidecar_name: str) -> dict[str, Any] | None:
    """The target an engine sidecar records (backend, versions, CPU or GPU), or None for a file that is no sidecar."""

    spec = spec_for_sidecar(sidecar_name)
    if spec is None:
        return None
    try:
        sidecar = read_json(directory / sidecar_name, sidecar_name, None, MAX_SIDECAR_BYTES)
    except (OSError, InputError):
        return None
    if not isinstance(sidecar, dict) or sidecar.get("backend") != spec.name:
        return None
    return spec.target_record(sidecar, sidecar_name)


def targets_of(directory: Path, names: Any) -> list[dict[str, Any]]:
    """The targets recorded by the engine sidecars among ``names`` (files of ``directory``), in name order."""

    suffixes = sidecar_suffixes()
    return [t for name in sorted(names) if name.endswith(suffixes) if (t := target_of(directory, name))]
