"""Deterministic, class-stratified image subsets and their manifests (relative path + sha256).

A manifest pins exactly which images calibration used, so CI calibrates on the same bytes every
time and evaluation can prove it never overlaps the calibration images. It also pins the
*tuning* slice: held-out images of the same source that mixed-precision fallback measures its
candidates on, never calibration images and, by the same overlap check, never evaluation images.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import random
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from resnext_deploy.data.datasets import ImageRecord
from resnext_deploy.errors import InputError, UsageError
from resnext_deploy.files import read_json, sha256_file, write_json

MANIFEST_SCHEMA = "resnext-deploy/calibration-manifest"
MANIFEST_VERSION = 1
MAX_MANIFEST_BYTES = 256 * 1024 * 1024  # a subset of a few hundred thousand images; a larger file is refused unread


def select_subset(
    records: Sequence[ImageRecord], size: int, seed: int, exclude: Iterable[str] = ()
) -> list[ImageRecord]:
    """Pick ``size`` records, class-stratified and reproducible from ``seed`` alone.

    Each class (unlabelled images form one class) is sorted by relative path and shuffled with
    a per-class seed; classes then take turns in a seeded order, so class counts differ by at
    most one and the result does not depend on filesystem listing order. Relative paths in
    ``exclude`` are never picked. Fewer records than ``size`` means all of them are returned.
    """
    if size <= 0:
        raise UsageError(f"subset size must be positive, got {size}", hint="use e.g. --calib-size 512")
    excluded = set(exclude)
    by_class: dict[int | None, list[ImageRecord]] = defaultdict(list)
    for record in sorted(records, key=lambda r: r.relpath):
        if record.relpath not in excluded:
            by_class[record.label].append(record)
    classes = sorted(by_class, key=lambda label: (label is None, label or 0))
    for label in classes:
        random.Random(f"{seed}/{label}").shuffle(by_class[label])
    random.Random(f"{seed}/classes").shuffle(classes)
    picked: list[ImageRecord] = []
    depth = 0
    while len(picked) < size and any(depth < len(by_class[c]) for c in classes):
        for label in classes:
            if depth < len(by_class[label]) and len(picked) < size:
                picked.append(by_class[label][depth])
        depth += 1
    return picked


@dataclass(frozen=True)
class ManifestEntry:
    """One pinned image: path relative to the image root, content sha256 and size, class index."""

    relpath: str
    sha256: str
    label: int | None
    size: int

    def to_dict(self) -> dict[str, Any]:
        return {"relpath": self.relpath, "sha256": self.sha256, "size": self.size, "label": self.label}


@dataclass(frozen=True)
class Manifest:
    """An image subset pinned by content; ``root`` is informational, entries are portable."""

    root: str
    layout: str
    seed: int
    entries: tuple[ManifestEntry, ...]
    split: str | None = None
    tuning: tuple[ManifestEntry, ...] = ()  # held-out slice of the same source for mixed-precision fallback

    @classmethod
    def from_records(
        cls, records: Sequence[ImageRecord], *, root: Path, layout: str, seed: int, split: str | None = None
    ) -> Manifest:
        """Hash each record's file and pin the list (an empty list is an error, as in :meth:`read`)."""
        if not records:
            raise InputError("no images to pin in a calibration manifest", hint="pass a folder that holds images")
        entries = tuple(ManifestEntry(r.relpath, sha256_file(r.path), r.label, r.path.stat().st_size) for r in records)
        return cls(root=str(Path(root).resolve()), layout=layout, seed=seed, entries=entries, split=split)

    @property
    def sha256(self) -> str:
        """Hash of the canonical JSON of the entries (not of the root), the cache-key part."""
        canonical = json.dumps([e.to_dict() for e in self.entries], sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()

    @property
    def tuning_sha256(self) -> str | None:
        """Hash of the tuning slice's canonical JSON (part of the sensitivity cache key), None without one."""
        if not self.tuning:
            return None
        canonical = json.dumps([e.to_dict() for e in self.tuning], sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()

    @property
    def relpaths(self) -> set[str]:
        return {e.relpath for e in self.entries}

    def with_tuning(self, records: Sequence[ImageRecord]) -> Manifest:
        """This manifest with ``records`` pinned as its tuning slice (InputError if one is a calibration image)."""
        tuning = tuple(ManifestEntry(r.relpath, sha256_file(r.path), r.label, r.path.stat().st_size) for r in records)
        hashes = {entry.sha256 for entry in self.entries}
        shared = sorted(e.relpath for e in tuning if e.relpath in self.relpaths or e.sha256 in hashes)
        if shared:
            raise InputError(
                f"{len(shared)} tuning image(s) are also calibration images: {', '.join(shared[:5])}",
                hint="tuning images must be held out from calibration; pick them with select_subset(..., exclude=...)",
            )
        return dataclasses.replace(self, tuning=tuning)

    def tuning_records(self, root: str | Path) -> list[ImageRecord]:
        """The tuning slice under ``root``, each file checked against its sha256 (like :meth:`resolve`)."""
        return dataclasses.replace(self, entries=self.tuning, tuning=()).resolve(root)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": MANIFEST_SCHEMA,
            "version": MANIFEST_VERSION,
            "sha256": self.sha256,
            "root": self.root,
            "layout": self.layout,
            "split": self.split,
            "seed": self.seed,
            "count": len(self.entries),
            "entries": [e.to_dict() for e in self.entries],
            **({"tuning": {"sha256": self.tuning_sha256, "count": len(self.tuning),
                           "entries": [e.to_dict() for e in self.tuning]}} if self.tuning else {}),
        }

    def write(self, path: str | Path) -> Path:
        """Write the manifest as JSON, atomically; returns the path."""
        write_json(path, self.to_dict())
        return Path(path)

    @classmethod
    def read(cls, path: str | Path) -> Manifest:
        """Read and validate a manifest written by :meth:`write`."""
        path = Path(path)
        hint = "pass a manifest written by resnext-deploy (calibration_manifest.json)"
        try:
            data = read_json(path, f"manifest {path}", hint, MAX_MANIFEST_BYTES)
        except FileNotFoundError:
            raise InputError(f"manifest {path} does not exist", hint=hint) from None
        except OSError as exc:
            raise InputError(f"manifest {path} is not readable: {exc}", hint=hint) from None
        if not isinstance(data, dict) or data.get("schema") != MANIFEST_SCHEMA:
            raise InputError(f"{path} is not a calibration manifest", hint=hint)
        if data.get("version") != MANIFEST_VERSION:
            raise InputError(f"manifest {path} has version {data.get('version')}, expected {MANIFEST_VERSION}", hint="re-create it with this release")
        try:
            entries = _entries(data["entries"])
            tuning = _entries((data.get("tuning") or {}).get("entries", []))
            manifest = cls(
                root=str(data["root"]), layout=str(data["layout"]), seed=int(data["seed"]),
                entries=entries, split=data.get("split"), tuning=tuning,
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise InputError(f"manifest {path} is malformed ({exc!r})", hint=hint) from None
        if not entries:
            raise InputError(f"manifest {path} lists no images", hint=hint)
        if data.get("sha256") not in (None, manifest.sha256) or (
            tuning and data["tuning"].get("sha256") not in (None, manifest.tuning_sha256)
        ):
            raise InputError(f"manifest {path} was edited: its sha256 does not match its entries", hint="re-create the manifest instead of editing it")
        return manifest

    def resolve(self, root: str | Path) -> list[ImageRecord]:
        """Records under ``root`` for every entry, checking each file exists and matches its sha256."""
        root = Path(root).expanduser().resolve()
        missing: list[str] = []
        changed: list[str] = []
        records: list[ImageRecord] = []
        for entry in self.entries:
            path = root / entry.relpath
            if not path.is_file():
                missing.append(entry.relpath)
            elif sha256_file(path) != entry.sha256:
                changed.append(entry.relpath)
            else:
                records.append(ImageRecord(path=path, relpath=entry.relpath, label=entry.label))
        if missing:
            raise InputError(
                f"{len(missing)} manifest image(s) are missing under {root}: {', '.join(missing[:5])}",
                hint=f"point at the image folder the manifest was made from (it was {self.root})",
            )
        if changed:
            raise InputError(
                f"{len(changed)} manifest image(s) differ from the manifest (sha256 mismatch): {', '.join(changed[:5])}",
                hint="the images changed since the manifest was written; re-create it or restore the files",
            )
        return records


def _entries(items: Iterable[dict[str, Any]]) -> tuple[ManifestEntry, ...]:
    return tuple(
        ManifestEntry(str(e["relpath"]), str(e["sha256"]), None if e["label"] is None else int(e["label"]), int(e["size"]))
        for e in items
    )


def records_sha256(records: Sequence[ImageRecord]) -> str:
    """Content hash of an image subset in its order (relative path and file sha256 of each): its identity in caches."""
    canonical = json.dumps([[r.relpath, sha256_file(r.path)] for r in records], separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def check_disjoint(calib: Manifest, eval_records: Sequence[ImageRecord]) -> None:
    """Raise :class:`InputError` if any evaluation image is one of the calibration or tuning images.

    An image overlaps when it is the same file (the manifest root joined with its relative
    path) or has the same content sha256, so renamed or copied files are caught too. Only
    files whose size matches a pinned image are hashed.
    """
    for kind, pinned in (("calibration", calib.entries), ("tuning", calib.tuning)):
        overlaps = _overlaps(Path(calib.root), pinned, eval_records)
        if overlaps:
            raise InputError(
                f"{len(overlaps)} evaluation image(s) are also {kind} images: {', '.join(overlaps[:5])}",
                hint="evaluate on other images, or make the calibration manifest from a different folder or seed",
            )


def _overlaps(root: Path, pinned: Sequence[ManifestEntry], eval_records: Sequence[ImageRecord]) -> list[str]:
    paths = {(root / e.relpath).resolve(): e.relpath for e in pinned}
    hashes = {e.sha256: e.relpath for e in pinned}
    sizes = {e.size for e in pinned}
    overlaps: list[str] = []
    for record in eval_records:
        resolved = record.path.resolve()
        if resolved in paths:
            overlaps.append(record.relpath)
            continue
        if resolved.stat().st_size not in sizes:
            continue
        twin = hashes.get(sha256_file(resolved))
        if twin is not None:
            overlaps.append(f"{record.relpath} (same content as {twin})")
    return overlaps
