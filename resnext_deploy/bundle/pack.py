"""`package`: an export directory -> one deterministic ``.tar.gz`` bundle with ``manifest.json``.

The same directory always gives the same bytes: names are sorted (manifest first), owners,
modes and times are fixed, the gzip header carries no name or time, and the manifest holds no
packing time, only the export's own record.
"""

from __future__ import annotations

import gzip
import io
import json
import platform
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from resnext_deploy import environment
from resnext_deploy.bundle.manifest import (
    CLASSES_NAME,
    MANIFEST_NAME,
    PREPROCESS_NAME,
    SCHEMA,
    SCHEMA_VERSION,
    file_record,
    targets_of,
    tensor_specs,
)
from resnext_deploy.bundle.signing import SIGNATURE_NAME, load_private_key, sign_manifest
from resnext_deploy.data.datasets import class_name
from resnext_deploy.errors import InputError, OutputError
from resnext_deploy.files import atomic_path, sha256_bytes, sha256_file
from resnext_deploy.layout import (
    CALIBRATION_MANIFEST,
    FP32_NAME,
    PRECISIONS,
    REPORT_MD_NAME,
    REPORT_NAME,
    STATS_PREFIX,
    artifact_name,
)
from resnext_deploy.metadata import read_metadata
from resnext_deploy.outdir import check_artifacts, locked
from resnext_deploy.report import RANDOM_WEIGHTS_WARNING, Report, read_report

FIXED_MTIME = 946684800  # 2000-01-01T00:00:00Z: a constant, so bundles are reproducible
GENERATED = (MANIFEST_NAME, PREPROCESS_NAME, CLASSES_NAME)
TOP_LEVEL_EXTRA = (REPORT_NAME, REPORT_MD_NAME)


@dataclass(frozen=True)
class PackageResult:
    """Where the bundle went, its own sha256 and size, and the manifest inside it."""

    path: Path
    sha256: str
    size: int
    manifest: dict[str, Any]


def collect_files(directory: Path) -> list[str]:
    """Bundle members taken from an export directory: models, engines + sidecars, calibration records, reports."""
    names = {
        p.name for p in directory.iterdir()
        if p.is_file() and not p.is_symlink() and not p.name.startswith(".")
        and (p.name.startswith("model.") or p.name in TOP_LEVEL_EXTRA)
    }
    calibration = directory / "calibration"
    if calibration.is_dir():
        for path in calibration.iterdir():
            if path.is_file() and not path.is_symlink() and (path.name == "manifest.json" or (path.name.startswith("stats-") and path.suffix == ".json")):
                names.add(f"calibration/{path.name}")
    return sorted(names - set(GENERATED))


def class_names(num_classes: int) -> list[str]:
    """The first ``num_classes`` ImageNet-1k class names in canonical order (timm's ImageNetInfo)."""

    if not 1 <= num_classes <= 1000:
        raise InputError(f"num_classes {num_classes} is outside 1..1000, so ImageNet names do not apply")
    return [class_name(i) for i in range(num_classes)]


def _artifact_metadata(directory: Path, artifact: str) -> dict[str, Any]:
    metadata = read_metadata(directory / artifact)
    for key in ("preprocess", "num_classes"):
        if key not in metadata:
            raise InputError(f"{directory / artifact} has no '{key}' metadata", hint="re-export it with this resnext-deploy")
    return metadata


def build_manifest(directory: Path, report: Report, members: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The manifest of an export directory whose bundle members (name -> file record) are ``members``."""
    precision = report.precision or "fp32"
    artifact = artifact_name(precision)
    metadata = _artifact_metadata(directory, artifact)
    input_spec, output_spec = tensor_specs(directory / artifact)
    targets = targets_of(directory, members)
    report_env = report.environment
    weights = _weights(directory, artifact, report, metadata)
    artifacts: dict[str, Any] = {"fp32": FP32_NAME, "model": artifact, "preprocess": PREPROCESS_NAME, "classes": CLASSES_NAME}
    for key, name in (("report", REPORT_NAME), ("report_md", REPORT_MD_NAME), ("calibration_manifest", CALIBRATION_MANIFEST)):
        if name in members:
            artifacts[key] = name
    stats = [n for n in members if n.startswith(STATS_PREFIX)]
    if stats:
        artifacts["calibration_stats"] = stats
    recipes = {recipe: name for recipe, name in report.artifacts.recipes.items() if name in members}
    if recipes:
        artifacts["recipes"] = recipes  # recipe (= backend) -> the INT8 artifact made with it (export --targets)
    return {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "created": report.created or None,
        "model": {
            "name": metadata.get("model_name") or (report.model.name if report.model is not None else None),
            "num_classes": int(metadata["num_classes"]),
            "weights": weights,
            "random_weights": bool(weights.get("random") or weights.get("kind") == "random"),
        },
        "precision": precision,
        "artifacts": artifacts,
        "input": input_spec,
        "output": output_spec,
        "preprocessing": metadata["preprocess"],
        "toolchain": {
            "exported_with": report.toolchain_version or metadata.get("toolchain_version"),
            "packaged_with": environment.toolchain_version(),
            "python": report_env.get("python", platform.python_version()),
            "packages": report_env.get("packages", {}),
            "opset": metadata.get("opset"),
        },
        "targets": targets,
        "warnings": _warnings(report, weights),
        "files": [members[name] for name in sorted(members)],
    }


def _weights(directory: Path, artifact: str, report: Report, metadata: dict[str, Any]) -> dict[str, Any]:
    """The weights record of the artifact's own metadata (the checksummed source of truth), refusing a report
    that claims other weights (an edited report.json must not turn random weights into trained ones)."""
    recorded = metadata.get("weights")
    if not isinstance(recorded, dict) or "kind" not in recorded:
        raise InputError(f"{directory / artifact} has no 'weights' metadata", hint="re-export it with this resnext-deploy")
    claimed = report.weights.model_dump(exclude_unset=True) if report.weights is not None else {}
    differ = [key for key in ("origin", "kind", "sha256") if key in claimed and claimed[key] != recorded.get(key)]
    if differ:
        raise InputError(f"report.json's weights ({', '.join(f'{k}={claimed[k]!r}' for k in differ)}) are not those "
                         f"{artifact} was made from ({', '.join(f'{k}={recorded.get(k)!r}' for k in differ)})",
                         hint="report.json was edited; re-run `resnext-deploy export` for this directory")
    return {**recorded, "random": recorded.get("kind") == "random"}


def _warnings(report: Report, weights: dict[str, Any]) -> list[str]:
    warnings = [w for w in report.warnings if w != RANDOM_WEIGHTS_WARNING]
    return ([RANDOM_WEIGHTS_WARNING] if weights["random"] else []) + warnings


def _generated(directory: Path, report: Report) -> dict[str, bytes]:
    precision = report.precision or "fp32"
    if precision not in PRECISIONS:
        raise InputError(f"report.json names an unknown precision {precision!r}",
                         hint="re-run `resnext-deploy export` for this directory")
    artifact = artifact_name(precision)
    if not (directory / artifact).is_file():
        raise InputError(f"{directory} has no {artifact} (precision {precision!r} in report.json)",
                         hint="re-run `resnext-deploy export` for this directory")
    metadata = _artifact_metadata(directory, artifact)
    preprocess = json.dumps(metadata["preprocess"], indent=2, sort_keys=True) + "\n"
    classes = "\n".join(class_names(int(metadata["num_classes"]))) + "\n"
    return {PREPROCESS_NAME: preprocess.encode(), CLASSES_NAME: classes.encode()}


def _tarinfo(name: str, size: int, directory: bool = False) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = 0 if directory else size
    info.type = tarfile.DIRTYPE if directory else tarfile.REGTYPE
    info.mode = 0o755 if directory else 0o644
    info.mtime = FIXED_MTIME
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def write_tar(output: Path, directory: Path, files: list[str], generated: dict[str, bytes]) -> None:
    """Write the deterministic tarball atomically: manifest first (its signature second), then folders and files sorted."""
    names = sorted(set(files) | set(generated) - {MANIFEST_NAME, SIGNATURE_NAME})
    folders = sorted({str(Path(n).parent.as_posix()) for n in names if "/" in n})
    with atomic_path(output) as tmp, open(tmp, "wb") as raw:
        with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=6) as gz:
            with tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
                for first in (MANIFEST_NAME, SIGNATURE_NAME):
                    if first in generated:
                        tar.addfile(_tarinfo(first, len(generated[first])), io.BytesIO(generated[first]))
                for folder in folders:
                    tar.addfile(_tarinfo(folder, 0, directory=True))
                for name in names:
                    if name in generated:
                        tar.addfile(_tarinfo(name, len(generated[name])), io.BytesIO(generated[name]))
                    else:
                        path = directory / name
                        with open(path, "rb") as handle:
                            tar.addfile(_tarinfo(name, path.stat().st_size), handle)


def stage_contents(directory: Path) -> tuple[list[str], dict[str, bytes], dict[str, Any]]:
    """(files copied from ``directory``, generated files incl. manifest.json, manifest) of its bundle.

    Every artifact must still be the file the export wrote (sha256 and precision against report.json).
    """

    directory = Path(directory)
    if not directory.is_dir():
        raise InputError(f"export directory not found: {directory}", hint="run `resnext-deploy export MODEL --output DIR` first")
    report = read_report(directory)
    check_artifacts(directory, report)
    generated = _generated(directory, report)
    files = collect_files(directory)
    members = {name: file_record(directory, name) for name in files}
    for name, data in generated.items():

        members[name] = {"path": name, "size": len(data), "sha256": sha256_bytes(data)}
    manifest = build_manifest(directory, report, members)
    generated[MANIFEST_NAME] = (json.dumps(manifest, indent=2) + "\n").encode()
    return files, generated, manifest


def package_directory(directory: Path, output: Path, *, force: bool = False, sign: Path | None = None) -> PackageResult:
    """Pack export ``directory`` into the ``.tar.gz`` bundle ``output`` (atomically; ``force`` overwrites).

    ``sign``: an Ed25519 private key; the bundle then carries ``manifest.json.sig`` (``bundle.signing``).
    """

    output = Path(output)
    if output.exists() and not force:
        raise OutputError(f"{output} already exists", hint="pass --force to overwrite it, or choose another --output")
    if output.is_dir():
        raise OutputError(f"{output} is a directory", hint="--output names the bundle file, e.g. bundle.tar.gz")
    if sign is not None:
        load_private_key(sign)  # a bad key fails before any work
    if not Path(directory).is_dir():
        raise InputError(f"export directory not found: {directory}", hint="run `resnext-deploy export MODEL --output DIR` first")
    with locked(Path(directory), ["package", str(directory)], required=False):
        files, generated, manifest = stage_contents(Path(directory))
        if sign is not None:
            generated[SIGNATURE_NAME] = sign_manifest(generated[MANIFEST_NAME], sign)
        try:
            write_tar(output, Path(directory), files, generated)
        except OSError as exc:
            raise OutputError(f"cannot write {output}: {exc.strerror or exc}", hint="choose a writable --output path") from None
    return PackageResult(output, sha256_file(output), output.stat().st_size, manifest)
