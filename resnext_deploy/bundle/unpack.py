"""Safe unpacking in one streaming pass: nothing is written that the manifest does not vouch for.

A bundle starts with ``manifest.json`` (``package`` writes it first). It is read and checked before
any other member; then each member must be a plain file or folder with a relative name inside the
bundle (links, devices, FIFOs, absolute names and ``..`` are refused by name), listed in the
manifest with the size its tar header declares, and it is written while its sha256 is computed,
so a wrong file is refused at its end. The total the manifest declares must fit the bundle limit
and the free disk space before anything is written, and the decompressed stream itself is read
under a running byte budget (headers included), so neither a tar bomb nor an oversized header can
fill the disk or the memory. Extraction goes into a fresh sibling folder renamed onto the target
only when every listed file came out whole; the archive is decompressed once.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import posixpath
import shutil
import tarfile
import tempfile
import zlib
from pathlib import Path
from typing import Any

from resnext_deploy.bundle.manifest import (
    MANIFEST_NAME,
    MAX_MANIFEST_BYTES,
    REPACK_HINT,
    check_relative,
    parse_manifest,
)
from resnext_deploy.bundle.signing import MAX_SIGNATURE_BYTES, SIGNATURE_NAME
from resnext_deploy.errors import InputError, OutputError

MAX_BUNDLE_BYTES = 32 * 1024**3  # the files of one bundle together (ONNX files alone are < 2 GiB each)
MAX_TEXT_BYTES = 64 * 1024**2  # a .json / .txt / .md member
MAX_MEMBERS = 10_000
HEADER_ALLOWANCE = 64 * 1024  # per member: tar and pax headers, padding
_CHUNK = 1 << 20
_READ_ERRORS = (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile, OSError)


class _BudgetExceeded(Exception):
    pass


class _Budget(io.RawIOBase):
    """A readable stream that refuses to deliver more than ``limit`` bytes in total (the limit may be raised)."""

    def __init__(self, stream: Any, limit: int) -> None:
        self._stream = stream
        self.limit = limit
        self.consumed = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        allowed = self.limit - self.consumed
        if size < 0 or size > allowed + 1:
            size = allowed + 1
        data = self._stream.read(size)
        self.consumed += len(data)
        if self.consumed > self.limit:
            raise _BudgetExceeded
        return data

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def _kind(member: tarfile.TarInfo) -> str:
    if member.issym():
        return f"a symlink to {member.linkname!r}"
    if member.islnk():
        return f"a hardlink to {member.linkname!r}"
    if member.isdev():
        return "a device or FIFO"
    return f"an entry of type {member.type!r}"


def _refuse(label: str, message: str) -> InputError:
    return InputError(f"{label}: {message}", hint="do not use this bundle; " + REPACK_HINT)


def _member_name(label: str, member: tarfile.TarInfo) -> str:
    name = check_relative(member.name, f"{label}: member")
    if not (member.isreg() or member.isdir()):
        raise _refuse(label, f"member {member.name!r} is {_kind(member)}; bundles hold only plain files and folders")
    return name


def _max_size(name: str) -> int:
    return MAX_TEXT_BYTES if name.endswith((".json", ".txt", ".md", ".sig")) else MAX_BUNDLE_BYTES


def _open_stream(archive: Path) -> tuple[Any, Any]:
    """(raw file, decompressed stream) of a gzip-compressed or plain tar archive."""
    try:
        raw = open(archive, "rb")  # noqa: SIM115 - closed by the caller
    except FileNotFoundError:
        raise InputError(f"bundle not found: {archive}", hint="pass a .tar.gz written by `resnext-deploy package`") from None
    magic = raw.read(2)
    raw.seek(0)
    return raw, (gzip.GzipFile(fileobj=raw, mode="rb") if magic == b"\x1f\x8b" else raw)


def _read_manifest_member(tar: tarfile.TarFile, label: str) -> tuple[bytes, dict[str, Any]]:
    first = tar.next()
    if first is None or first.name != MANIFEST_NAME or not first.isreg():
        raise _refuse(label, f"the first member is {first.name if first else 'missing'!r}, not {MANIFEST_NAME} "
                             "(bundles written by `resnext-deploy package` start with it)")
    if first.size > MAX_MANIFEST_BYTES:
        raise _refuse(label, f"{MANIFEST_NAME} declares {first.size:,} bytes, more than a manifest can be")
    handle = tar.extractfile(first)
    assert handle is not None
    data = handle.read()
    return data, parse_manifest(data, f"{label}: {MANIFEST_NAME}")


def _check_totals(label: str, listed: dict[str, dict[str, Any]], into: Path) -> int:
    for name, record in listed.items():
        if record["size"] > _max_size(name):
            raise _refuse(label, f"{name}: manifest declares {record['size']:,} bytes, over the {_max_size(name):,}-byte limit for such a file")
    if len(listed) > MAX_MEMBERS:
        raise _refuse(label, f"manifest lists {len(listed):,} files, more than {MAX_MEMBERS:,}")
    total = sum(record["size"] for record in listed.values())
    if total > MAX_BUNDLE_BYTES:
        raise _refuse(label, f"manifest declares {total:,} bytes, over the {MAX_BUNDLE_BYTES:,}-byte bundle limit")
    free = shutil.disk_usage(into).free
    if total > free:
        raise OutputError(f"unpacking {label} needs {total:,} bytes, {into} has {free:,} free",
                          hint="free some space, or unpack elsewhere (--output)")
    return total


def _write_member(tar: tarfile.TarFile, member: tarfile.TarInfo, destination: Path) -> str:
    """Copy a member to ``destination`` (exactly its declared size); return its sha256."""
    source = tar.extractfile(member)
    assert source is not None
    digest = hashlib.sha256()
    with open(destination, "xb") as out:
        for chunk in iter(lambda: source.read(_CHUNK), b""):
            digest.update(chunk)
            out.write(chunk)
    os.chmod(destination, 0o644)
    return digest.hexdigest()


def _extract_stream(tar: tarfile.TarFile, budget: _Budget, into: Path, label: str) -> None:
    manifest_bytes, manifest = _read_manifest_member(tar, label)
    listed = {posixpath.normpath(f["path"]): f for f in manifest["files"]}
    total = _check_totals(label, listed, into)
    budget.limit = budget.consumed + total + MAX_SIGNATURE_BYTES + HEADER_ALLOWANCE * (len(listed) + 64)
    (into / MANIFEST_NAME).write_bytes(manifest_bytes)
    seen: set[str] = set()
    folders = 0
    while (member := tar.next()) is not None:  # not `for member in tar`: that would yield the manifest again
        name = _member_name(label, member)
        destination = into / name
        if not destination.resolve().is_relative_to(into.resolve()):
            raise _refuse(label, f"member {member.name!r} escapes the bundle directory")
        if member.isdir():
            folders += 1
            if folders > MAX_MEMBERS:
                raise _refuse(label, f"more than {MAX_MEMBERS:,} folders")
            destination.mkdir(parents=True, exist_ok=True)
            continue
        if name in seen or name == MANIFEST_NAME:
            raise _refuse(label, f"member {member.name!r} appears twice")
        seen.add(name)
        destination.parent.mkdir(parents=True, exist_ok=True)
        if name == SIGNATURE_NAME:
            if member.size > MAX_SIGNATURE_BYTES:
                raise _refuse(label, f"{SIGNATURE_NAME} is {member.size:,} bytes, too large for a signature")
            _write_member(tar, member, destination)
            continue
        record = listed.get(name)
        if record is None:
            raise _refuse(label, f"bundle holds a file not listed in {MANIFEST_NAME}: {name}")
        if member.size != record["size"]:
            raise _refuse(label, f"failed its checksum check: {name}: size {member.size} bytes, manifest says "
                                 f"{record['size']} (truncated or modified)")
        if _write_member(tar, member, destination) != record["sha256"]:
            raise _refuse(label, f"failed its checksum check: {name}: sha256 does not match the manifest (modified)")
    missing = sorted(set(listed) - seen)
    if missing:
        raise _refuse(label, "failed its checksum check: " + "; ".join(f"{name}: missing" for name in missing[:5]))


def safe_extract(archive: Path, target: Path) -> Path:
    """Unpack bundle ``archive`` into ``target`` (which must not exist yet, or be empty); return ``target``.

    Every file is checked against the manifest while it is written (see the module docstring), so
    the unpacked folder is a verified bundle; anything wrong is an ``InputError`` and leaves nothing.
    """
    archive, target = Path(archive), Path(target)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise OutputError(f"{target} already exists and is not empty", hint="remove it or pass another --output directory")
    target.parent.mkdir(parents=True, exist_ok=True)
    label = str(archive)
    raw, stream = _open_stream(archive)
    try:
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".unpack", dir=target.parent))
    except BaseException:
        raw.close()
        raise
    try:
        budget = _Budget(stream, MAX_MANIFEST_BYTES + 2 * HEADER_ALLOWANCE)
        try:
            with tarfile.open(fileobj=budget, mode="r|") as tar:
                _extract_stream(tar, budget, staging, label)
        except _BudgetExceeded:
            raise _refuse(label, "the archive holds more data than its manifest declares (a tar bomb?)") from None
        except InputError:
            raise
        except _READ_ERRORS as exc:
            if isinstance(exc, OSError) and exc.errno is not None:
                raise  # a problem of this machine (disk full, permissions), not of the archive
            raise InputError(f"{archive} is not a readable bundle tarball ({exc or type(exc).__name__})",
                             hint="the file is truncated or not a .tar.gz; copy it again or " + REPACK_HINT) from None
        if target.exists():
            target.rmdir()
        os.replace(staging, target)
    finally:
        raw.close()
        shutil.rmtree(staging, ignore_errors=True)
    return target
