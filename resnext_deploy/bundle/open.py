"""Open a bundle (a ``.tar.gz`` or an unpacked folder), checked before use.

Checked means: every listed file has its size and sha256 (``verify_bundle``, or while unpacking),
every field a reader uses is typed and bounded, the manifest's statements agree with the model it
ships (``claims``), and the signature satisfies the trust policy (``signing``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from resnext_deploy.bundle.claims import check_claims, check_engine_files
from resnext_deploy.bundle.manifest import MAX_SIDECAR_BYTES, REPACK_HINT, CheckResult, read_manifest, verify_bundle
from resnext_deploy.bundle.schema import check_preprocessing
from resnext_deploy.bundle.signing import SignatureStatus, TrustPolicy, check_signature
from resnext_deploy.bundle.unpack import safe_extract
from resnext_deploy.engines import default_recipe, get_spec
from resnext_deploy.errors import InputError
from resnext_deploy.files import read_json
from resnext_deploy.zoo import PreprocessConfig


@dataclass
class OpenedBundle:
    """A verified bundle folder and its manifest; paths it hands out are always listed and checksummed."""

    directory: Path
    manifest: dict[str, Any]
    source: Path
    warnings: list[str] = field(default_factory=list)
    signature: SignatureStatus | None = None

    def listed(self, name: str) -> Path:
        """``directory/name`` for a file the manifest lists; ``InputError`` otherwise."""
        if name not in {f["path"] for f in self.manifest["files"]}:
            raise InputError(f"{self.source}: manifest names {name!r} but does not list it with a checksum", hint=REPACK_HINT)
        return self.directory / name

    def engine_input(self, backend: str) -> Path:
        """The ONNX artifact ``backend`` loads, once the engine sidecar it would find beside it is a listed file:
        a backend reads ``<stem><sidecar suffix>`` next to the ONNX, and nothing unlisted may steer what runs."""
        onnx_path = self.artifact_for(backend)
        sidecar = onnx_path.with_name(onnx_path.name.removesuffix(".onnx") + get_spec(backend).sidecar_suffix)
        if sidecar.exists() and sidecar.name not in {f["path"] for f in self.manifest["files"]}:
            raise InputError(f"{self.source}: {sidecar.name} is in the bundle folder but not listed in the manifest, and "
                             f"{backend} would load the engine it names",
                             hint=f"remove {sidecar.name}, or run `resnext-deploy build BUNDLE --backend {backend}`")
        return onnx_path

    def artifact(self, key: str) -> Path:
        """Path of an artifact named in the manifest's ``artifacts`` table (``model``, ``fp32``, ``preprocess``...)."""
        name = self.manifest.get("artifacts", {}).get(key)
        if not isinstance(name, str):
            raise InputError(f"{self.source}: manifest has no '{key}' artifact", hint=REPACK_HINT)
        return self.listed(name)

    def artifact_for(self, backend: str) -> Path:
        """The model artifact made with ``backend``'s default recipe (``artifacts.recipes``), else the bundle's own model."""

        recipes = self.manifest.get("artifacts", {}).get("recipes") or {}
        name = recipes.get(default_recipe(backend)) if recipes else None
        return self.listed(name) if isinstance(name, str) else self.artifact("model")

    def preprocess(self) -> PreprocessConfig:
        """The bundle's own eval transform (preprocess.json), bounded (``bundle.schema``)."""

        path = self.artifact("preprocess")
        try:
            data = read_json(path, f"{self.source}: {path.name}", REPACK_HINT, MAX_SIDECAR_BYTES)
        except OSError as exc:
            raise InputError(f"{path} is not a valid preprocessing config ({exc})", hint=REPACK_HINT) from None
        checked = check_preprocessing(data, f"{self.source}: {path.name}", REPACK_HINT)
        return PreprocessConfig.from_dict(checked.model_dump())

    def class_names(self) -> list[str]:
        """Class names in index order (classes.txt)."""
        try:
            names = self.artifact("classes").read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"{self.source}: classes.txt is unreadable ({exc})", hint=REPACK_HINT) from None
        expected = int(self.manifest["model"]["num_classes"])
        if len(names) != expected:
            raise InputError(f"{self.source}: classes.txt has {len(names)} names, the model has {expected} classes", hint=REPACK_HINT)
        return names


def check_result(result: CheckResult, source: Path, policy: TrustPolicy | None = None) -> OpenedBundle:
    """The opened bundle once its claims agree with its model and its signature satisfies ``policy``."""

    check_claims(result.directory, result.manifest, str(source))
    check_engine_files(result.directory, result.manifest, str(source))
    signature = check_signature(result.directory, result.manifest, policy or TrustPolicy(), str(source))
    warnings = list(result.warnings)
    if signature.unsigned_files:
        warnings.append(f"{len(signature.unsigned_files)} file(s) added on this device by `build` are not covered by the "
                        f"signature: {', '.join(signature.unsigned_files)}")
    if policy is not None and policy.trusted_keys and not signature.signed:
        warnings.append("this bundle is NOT signed: its checksums prove the files are intact, not who made them "
                        "(pass --require-signature to refuse unsigned bundles)")
    return OpenedBundle(result.directory, result.manifest, source, warnings, signature)


_TMP_PREFIX = "resnext-bundle-"


def _remove_orphans() -> None:
    """Remove the temporary unpackings of killed runs (``resnext-bundle-<pid>-*`` whose process is gone)."""
    for folder in Path(tempfile.gettempdir()).glob(f"{_TMP_PREFIX}*-*"):
        pid = folder.name[len(_TMP_PREFIX):].split("-", 1)[0]
        if not pid.isdigit() or not folder.is_dir() or folder.is_symlink() or folder.stat().st_uid != os.getuid():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(folder, ignore_errors=True)
        except PermissionError:
            continue


@contextlib.contextmanager
def open_bundle(path: Path, policy: TrustPolicy | None = None) -> Iterator[OpenedBundle]:
    """Yield a checked bundle: a tarball is unpacked (and verified while unpacking) into a temporary folder."""
    path = Path(path)
    if path.is_dir():
        yield check_result(verify_bundle(path, extra="warn"), path, policy)
        return
    if not path.exists():
        raise InputError(f"bundle not found: {path}", hint="pass a .tar.gz written by `resnext-deploy package` or its unpacked folder")
    _remove_orphans()
    with tempfile.TemporaryDirectory(prefix=f"{_TMP_PREFIX}{os.getpid()}-") as tmp:
        directory = safe_extract(path, Path(tmp) / "bundle")
        manifest = read_manifest(directory, label=str(path))
        result = CheckResult(directory, manifest, verified=[f["path"] for f in manifest["files"]])
        yield check_result(result, path, policy)
