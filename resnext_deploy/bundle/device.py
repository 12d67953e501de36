"""On the target device: build (or reuse) the engine for this machine, and predict on image files with it."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from resnext_deploy.bundle.manifest import (
    MANIFEST_NAME,
    MAX_SIDECAR_BYTES,
    REPACK_HINT,
    SOURCE_NAME,
    file_record,
    read_manifest,
    targets_of,
    verify_bundle,
)
from resnext_deploy.bundle.open import OpenedBundle, check_result
from resnext_deploy.bundle.predict import (
    DEFAULT_MAX_BATCH,
    ModelSource,
    PredictResult,
    RunnerChoice,
    check_images,
    run_predictions,
)
from resnext_deploy.bundle.signing import SIGNATURE_NAME, SIGNED_MANIFEST_NAME, TrustPolicy
from resnext_deploy.bundle.unpack import safe_extract
from resnext_deploy.engines import DEFAULT_BACKEND, REGISTRY, BuildOptions, get_spec, resolve_backend, select_for
from resnext_deploy.errors import InputError, NotAvailableError, OutputError, UsageError
from resnext_deploy.files import read_json, sha256_file, write_bytes, write_json

TARBALL_SUFFIXES = (".tar.gz", ".tgz")


def unpacked_dir_for(archive: Path) -> Path:
    """``dir/name.tar.gz`` -> ``dir/name`` (the ``BUNDLE_DIR`` next to the tarball)."""
    name = archive.name
    for suffix in TARBALL_SUFFIXES:
        if name.endswith(suffix):
            return archive.with_name(name[: -len(suffix)])
    return archive.with_name(name + ".d")


def _unpacked_from(directory: Path) -> str | None:
    """The sha256 of the tarball ``directory`` was unpacked from, as recorded there (None when unknown)."""
    try:
        record = json.loads((directory / SOURCE_NAME).read_text(encoding="utf-8"))
        return str(record["sha256"])
    except (OSError, ValueError, KeyError, TypeError, RecursionError):
        return None


def _unpack_fresh(bundle: Path, target: Path, digest: str) -> None:
    """Unpack ``bundle`` beside ``target``, tie it to the tarball's sha256, then swap it in for the old folder."""
    fresh = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".fresh", dir=target.parent))
    old = target.with_name(f".{target.name}.old-{os.getpid()}")
    try:
        safe_extract(bundle, fresh / "bundle")
        write_json(fresh / "bundle" / SOURCE_NAME, {"tarball": bundle.name, "sha256": digest})
        if target.exists():
            os.replace(target, old)
        os.replace(fresh / "bundle", target)
    finally:
        shutil.rmtree(fresh, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)


def unpack_for_device(bundle: Path, output: Path | None = None) -> tuple[Path, str]:
    """The unpacked folder for ``bundle`` and what happened: itself when a folder; for a tarball, the folder
    next to it when it was unpacked from this very tarball (same sha256), else a fresh unpacking that replaces it."""
    bundle = Path(bundle)
    if bundle.is_dir():
        if output is not None and output.resolve() != bundle.resolve():
            raise UsageError("--output only applies to a .tar.gz bundle", hint="build in the unpacked folder itself")
        return bundle, f"used the folder {bundle}"
    if not bundle.is_file():
        raise InputError(f"bundle not found: {bundle}", hint="pass a .tar.gz written by `resnext-deploy package` or its unpacked folder")
    target = output if output is not None else unpacked_dir_for(bundle)
    digest = sha256_file(bundle)
    if (target / MANIFEST_NAME).is_file():
        recorded = _unpacked_from(target)
        if recorded == digest:
            return target, f"reused {target} (unpacked from this tarball before, sha256 {digest[:12]})"
        _unpack_fresh(bundle, target, digest)
        was = f"another tarball (sha256 {recorded[:12]})" if recorded else "a bundle of unknown origin"
        return target, f"unpacked {bundle.name} afresh into {target}, replacing {was}"
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise OutputError(f"{target} already exists and is not a bundle folder", hint="remove it or pass another --output directory")
    _unpack_fresh(bundle, target, digest)
    return target, f"unpacked into {target}"


@dataclass(frozen=True)
class BuildResult:
    """What `build` did: reused a recorded engine or built one, for which backend, and why."""

    directory: Path
    backend: str
    backend_reason: str
    action: str  # "reused" or "built"
    reason: str
    artifact: str
    sidecar: str
    unpacked: str = ""  # how the folder came to be: reused, unpacked, unpacked afresh replacing another bundle

    def to_dict(self) -> dict[str, Any]:
        return {k: str(v) if isinstance(v, Path) else v for k, v in self.__dict__.items()}


def _recorded(manifest: dict[str, Any], backend: str) -> dict[str, Any] | None:
    for target in manifest.get("targets", []):
        if target.get("backend") == backend and target.get("precision") == manifest.get("precision"):
            return target
    return None


def target_mismatch(bundle: OpenedBundle, backend: str, recorded: dict[str, Any] | None) -> str | None:
    """Why the engine recorded for ``backend`` cannot run here, or None when it can be reused (the backend's own check)."""
    if recorded is None or not recorded.get("artifact"):
        return f"the bundle has no {backend} engine for precision {bundle.manifest.get('precision')}"
    sidecar_path = bundle.listed(recorded["sidecar"])
    bundle.listed(recorded["artifact"])
    sidecar = read_json(sidecar_path, f"{bundle.source}: {recorded['sidecar']}", REPACK_HINT, MAX_SIDECAR_BYTES)
    record = sidecar.get("source_onnx") if isinstance(sidecar, dict) else None
    source_sha = record.get("sha256") if isinstance(record, dict) else None
    source = bundle.artifact_for(backend)
    if source_sha != sha256_file(source):
        return f"{recorded['artifact']} was built from another ONNX file than {source.name}"
    return get_spec(backend).target_mismatch(bundle.directory, recorded)


def _refresh_manifest(directory: Path, manifest: dict[str, Any], added: list[str]) -> dict[str, Any]:
    """Re-record every listed file plus ``added`` ones, and the targets their sidecars describe; write atomically.

    A signed bundle keeps the manifest its signature covers as manifest.signed.json (``bundle.signing``).
    """
    if (directory / SIGNATURE_NAME).is_file() and not (directory / SIGNED_MANIFEST_NAME).is_file():
        write_bytes(directory / SIGNED_MANIFEST_NAME, (directory / MANIFEST_NAME).read_bytes())
    names = sorted({f["path"] for f in manifest["files"]} | set(added))
    manifest["files"] = [file_record(directory, name) for name in names]
    manifest["targets"] = targets_of(directory, names)
    write_json(directory / MANIFEST_NAME, manifest)
    return manifest


def build_bundle(
    bundle: Path, backend: str = "auto", output: Path | None = None, options: Any = None, policy: TrustPolicy | None = None,
) -> BuildResult:
    """Build the engine for this machine from the bundle's ONNX, or reuse the recorded one when its target matches."""

    policy = policy or TrustPolicy()
    directory, unpacked = unpack_for_device(Path(bundle), output)
    opened = check_result(verify_bundle(directory, read_manifest(directory), extra="warn"), Path(bundle), policy)
    # e.g. a CPU-recipe INT8 model for TensorRT: exit 2 before anything else
    chosen, why = select_for(backend, opened.artifact_for(backend), opened.manifest.get("precision"))
    recorded = _recorded(opened.manifest, chosen.name)
    mismatch = target_mismatch(opened, chosen.name, recorded)
    if mismatch is None and recorded is not None:
        return BuildResult(directory, chosen.name, why, "reused", "the recorded target matches this machine",
                           recorded["artifact"], recorded["sidecar"], unpacked)
    built = chosen.build(opened.artifact_for(chosen.name), options or BuildOptions(), output_dir=directory)
    added = [built.path.relative_to(directory).as_posix(), built.sidecar.relative_to(directory).as_posix()]
    _refresh_manifest(directory, opened.manifest, added)
    return BuildResult(directory, chosen.name, why, "built", str(mismatch), added[0], added[1], unpacked)


def bundle_source(bundle: OpenedBundle) -> ModelSource:
    """The bundle as a prediction source: its own preprocessing, class names and recorded engines."""
    precision = str(bundle.manifest.get("precision"))
    return ModelSource(
        kind="bundle", path=bundle.source, precision=precision, preprocess=bundle.preprocess(),
        class_names=bundle.class_names(), input_name=bundle.manifest["input"]["name"],
        output_name=bundle.manifest["output"]["name"],
        random_weights=bool(bundle.manifest["model"]["random_weights"]),  # checked against the model's metadata (claims)
        open_runner=lambda backend: _runner(bundle, backend), warnings=list(bundle.warnings),
    )


def predict_images(bundle: OpenedBundle, images: list[Path], top: int = 5, backend: str = "auto") -> PredictResult:
    """Top-``top`` classes of each image with the bundle's preprocessing and model (``predict.run_predictions``)."""
    check_images(images, top)
    return run_predictions(bundle_source(bundle), images, top=top, backend=backend)


def _recorded_engine(bundle: OpenedBundle) -> tuple[dict[str, Any] | None, str]:
    """The recorded target ``auto`` runs (the first of the bundle's engines, in the registry's order, that fits
    this machine), or None and why none does ("" when the bundle records none)."""
    reasons = []
    for name in REGISTRY:
        recorded = _recorded(bundle.manifest, name)
        if recorded is None or not recorded.get("artifact"):
            continue
        mismatch = target_mismatch(bundle, name, recorded)
        if mismatch is None:
            return recorded, ""
        reasons.append(f"its {name} engine does not fit this machine: {mismatch}")
    return None, "; ".join(reasons)


def _runner(bundle: OpenedBundle, backend: str) -> RunnerChoice:
    """The runner for the bundle's model on this machine, with the backend, the one-line reason and the max batch.

    ``auto`` runs the engine the bundle records when it fits this machine; otherwise it falls back to
    the fixed rule (``engines.select.auto_rule``) and the reason says why. A named backend overrides
    both. A recorded engine that fits is loaded; a backend that compiles from ONNX loads the bundle's
    ONNX; one that needs a built engine (no ``loads_from_onnx``) without a fitting one is an error when
    named, else ``auto`` takes the default backend.
    """
    precision = bundle.manifest.get("precision")
    fallback = ""
    if backend == "auto":
        fitting, fallback = _recorded_engine(bundle)
        if fitting is not None:
            name = str(fitting["backend"])
            chosen, _ = resolve_backend(name, precision)
            why = f"auto: {name} (the engine this bundle records, built for this machine)"
            recorded = fitting
            artifact = bundle.engine_input(name) if get_spec(name).loads_from_onnx else bundle.listed(recorded["artifact"])
            return RunnerChoice(chosen.load(artifact), name, why, _max_batch(recorded))
    chosen, why = resolve_backend(backend, precision)
    if fallback:
        why = f"{why}; the bundle's engine was not used: {fallback}"
    spec = get_spec(chosen.name)
    recorded = _recorded(bundle.manifest, chosen.name)
    mismatch = target_mismatch(bundle, chosen.name, recorded)
    if mismatch is None and recorded is not None:
        artifact = bundle.engine_input(chosen.name) if spec.loads_from_onnx else bundle.listed(recorded["artifact"])
        return RunnerChoice(chosen.load(artifact), chosen.name, why, _max_batch(recorded))
    if not spec.loads_from_onnx:
        if backend == chosen.name:
            raise NotAvailableError(f"no {spec.title} engine in the bundle runs here: {mismatch}",
                                    hint=f"run `{spec.rebuild_hint}` on this machine first")
        why = f"auto: {DEFAULT_BACKEND} ({spec.title} is here but {mismatch}; run `resnext-deploy build` for an engine)"
        chosen = get_spec(DEFAULT_BACKEND).backend()
    return RunnerChoice(chosen.load(bundle.engine_input(chosen.name)), chosen.name, why, DEFAULT_MAX_BATCH)


def _max_batch(recorded: dict[str, Any]) -> int:
    """The largest batch a recorded engine takes (its profile's max), else ``DEFAULT_MAX_BATCH``."""
    profile = next(iter((recorded.get("profile") or {}).values()), {})
    return int((profile.get("max") or [DEFAULT_MAX_BATCH])[0])
