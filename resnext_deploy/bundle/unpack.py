"""Safe unpacking: every member is checked before anything is written, and nothing lands outside the target.

Members must be regular files or folders with relative names that stay inside the bundle; links,
devices, FIFOs, absolute names and ``..`` are refused by name. Extraction goes into a fresh
sibling folder (with ``tarfile``'s ``data`` filter as a second guard) that is renamed onto the
target only when every member came out whole.
"""

from __future__ import annotations

import os
import shutil
import tarfile
import tempfile
import zlib
from pathlib import Path

from resnext_deploy.bundle.manifest import REPACK_HINT, check_relative
from resnext_deploy.errors import InputError, OutputError

_READ_ERRORS = (tarfile.TarError, EOFError, zlib.error, OSError)


def _kind(member: tarfile.TarInfo) -> str:
    if member.issym():
        return f"a symlink to {member.linkname!r}"
    if member.islnk():
        return f"a hardlink to {member.linkname!r}"
    if member.isdev():
        return "a device or FIFO"
    return f"an entry of type {member.type!r}"


def check_members(archive: Path, members: list[tarfile.TarInfo]) -> list[tarfile.TarInfo]:
    """The members, or ``InputError`` naming the first that is not a plain file or folder inside the bundle."""
    seen: set[str] = set()
    for member in members:
        where = f"{archive}: member {member.name!r}"
        name = check_relative(member.name, f"{archive}: member")
        if not (member.isreg() or member.isdir()):
            raise InputError(f"{where} is {_kind(member)}; bundles hold only plain files and folders",
                             hint="do not use this bundle; " + REPACK_HINT)
        if member.isreg() and name in seen:
            raise InputError(f"{where} appears twice", hint="do not use this bundle; " + REPACK_HINT)
        seen.add(name)
    return members


def list_members(archive: Path) -> list[tarfile.TarInfo]:
    """Read every member header of a ``.tar.gz`` (this also reads through the data, catching truncation)."""
    try:
        with tarfile.open(archive, "r:*") as tar:
            return tar.getmembers()
    except FileNotFoundError:
        raise InputError(f"bundle not found: {archive}", hint="pass a .tar.gz written by `resnext-deploy package`") from None
    except _READ_ERRORS as exc:
        raise InputError(f"{archive} is not a readable bundle tarball ({exc})",
                         hint="the file is truncated or not a .tar.gz; copy it again or " + REPACK_HINT) from None


def _extract(archive: Path, into: Path) -> None:
    with tarfile.open(archive, "r:*") as tar:
        members = check_members(archive, tar.getmembers())
        for member in members:
            destination = (into / member.name).resolve()
            if not destination.is_relative_to(into.resolve()):
                raise InputError(f"{archive}: member {member.name!r} escapes the bundle directory", hint=REPACK_HINT)
        if hasattr(tarfile, "data_filter"):
            tar.extractall(into, members=members, filter="data")
        else:  # Python < 3.11.4: the member checks above are the guard
            tar.extractall(into, members=members)


def safe_extract(archive: Path, target: Path) -> Path:
    """Unpack bundle ``archive`` into ``target`` (which must not exist yet, or be empty); return ``target``."""
    archive, target = Path(archive), Path(target)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise OutputError(f"{target} already exists and is not empty", hint="remove it or pass another --output directory")
    list_members(archive)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".unpack", dir=target.parent))
    try:
        try:
            _extract(archive, staging)
        except (tarfile.FilterError if hasattr(tarfile, "FilterError") else tarfile.TarError) as exc:
            raise InputError(f"{archive}: refused member ({exc})", hint="do not use this bundle; " + REPACK_HINT) from None
        except _READ_ERRORS as exc:
            if isinstance(exc, InputError):
                raise
            raise InputError(f"{archive} could not be unpacked ({exc})", hint="the file is truncated; copy it again") from None
        if target.exists():
            target.rmdir()
        os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
