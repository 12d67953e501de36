"""Open a bundle (a ``.tar.gz`` or an unpacked folder), checked against its manifest before use."""

from __future__ import annotations

import contextlib
import json
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from resnext_deploy.bundle.manifest import REPACK_HINT, CheckResult, verify_bundle
from resnext_deploy.bundle.unpack import safe_extract
from resnext_deploy.errors import InputError
from resnext_deploy.zoo import PreprocessConfig


@dataclass
class OpenedBundle:
    """A verified bundle folder and its manifest; paths it hands out are always listed and checksummed."""

    directory: Path
    manifest: dict[str, Any]
    source: Path
    warnings: list[str] = field(default_factory=list)

    def listed(self, name: str) -> Path:
        """``directory/name`` for a file the manifest lists; ``InputError`` otherwise."""
        if name not in {f["path"] for f in self.manifest["files"]}:
            raise InputError(f"{self.source}: manifest names {name!r} but does not list it with a checksum", hint=REPACK_HINT)
        return self.directory / name

    def artifact(self, key: str) -> Path:
        """Path of an artifact named in the manifest's ``artifacts`` table (``model``, ``fp32``, ``preprocess``...)."""
        name = self.manifest.get("artifacts", {}).get(key)
        if not isinstance(name, str):
            raise InputError(f"{self.source}: manifest has no '{key}' artifact", hint=REPACK_HINT)
        return self.listed(name)

    def artifact_for(self, backend: str) -> Path:
        """The model artifact made with ``backend``'s default recipe (``artifacts.recipes``), else the bundle's own model."""
        from resnext_deploy.engines import default_recipe

        recipes = self.manifest.get("artifacts", {}).get("recipes") or {}
        name = recipes.get(default_recipe(backend)) if recipes else None
        return self.listed(name) if isinstance(name, str) else self.artifact("model")

    def preprocess(self) -> PreprocessConfig:
        """The bundle's own eval transform (preprocess.json)."""
        path = self.artifact("preprocess")
        try:
            return PreprocessConfig.from_dict(json.loads(path.read_text(encoding="utf-8")))
        except (ValueError, KeyError, TypeError) as exc:
            raise InputError(f"{path} is not a valid preprocessing config ({exc})", hint=REPACK_HINT) from None

    def class_names(self) -> list[str]:
        """Class names in index order (classes.txt)."""
        names = self.artifact("classes").read_text(encoding="utf-8").splitlines()
        expected = int(self.manifest["model"]["num_classes"])
        if len(names) != expected:
            raise InputError(f"{self.source}: classes.txt has {len(names)} names, the model has {expected} classes", hint=REPACK_HINT)
        return names


def check_result(result: CheckResult, source: Path) -> OpenedBundle:
    return OpenedBundle(result.directory, result.manifest, source, list(result.warnings))


@contextlib.contextmanager
def open_bundle(path: Path) -> Iterator[OpenedBundle]:
    """Yield a verified bundle: a tarball is unpacked safely into a temporary folder (removed afterwards)."""
    path = Path(path)
    if path.is_dir():
        yield check_result(verify_bundle(path, extra="warn"), path)
        return
    if not path.exists():
        raise InputError(f"bundle not found: {path}", hint="pass a .tar.gz written by `resnext-deploy package` or its unpacked folder")
    with tempfile.TemporaryDirectory(prefix="resnext-bundle-") as tmp:
        directory = safe_extract(path, Path(tmp) / "bundle")
        yield check_result(verify_bundle(directory, extra="error", label=str(path)), path)
