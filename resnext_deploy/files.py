"""Atomic, durable file writes and content hashes: nothing half-written ever looks finished.

A write goes to a hidden temporary file in the target's folder (``.NAME.XXXX.tmp``), is
flushed to disk (``fsync``), renamed onto the target, and the folder entry is flushed too, so
after a power loss a file either has its old content or its complete new content.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from resnext_deploy.errors import InputError, shorten


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path in the same folder; rename it onto ``path`` on success.

    On any exception the temporary file is removed and ``path`` is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if tmp_path.exists():
            os.chmod(tmp_path, 0o666 & ~_umask())
            fsync_file(tmp_path)
        os.replace(tmp_path, path)
        fsync_dir(path.parent)
    except OSError as exc:
        if exc.errno and exc.filename in (None, os.fspath(tmp_path)):  # a failed write names no file: name the artifact
            raise OSError(exc.errno, exc.strerror or os.strerror(exc.errno), os.fspath(path)) from exc
        raise
    finally:
        tmp_path.unlink(missing_ok=True)


TEMP_SUFFIX = ".tmp"


def fsync_file(path: str | os.PathLike[str]) -> None:
    """Flush a closed file's data to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """Flush a folder's entries (a rename into it) to the disk; a no-op where folders cannot be opened."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems refuse fsync on folders; the rename itself still happened
        pass
    finally:
        os.close(fd)


def remove_stale_temporaries(directory: str | os.PathLike[str]) -> list[str]:
    """Remove ``.NAME.XXXX.tmp`` files that :func:`atomic_path` left in ``directory`` when a process was killed.

    Call it only while holding the folder's lock (no other writer can be mid-write); returns the names removed.
    """
    removed = []
    directory = Path(directory)
    if not directory.is_dir():
        return removed
    for entry in directory.iterdir():
        if entry.name.startswith(".") and entry.name.endswith(TEMP_SUFFIX) and entry.is_file() and not entry.is_symlink():
            entry.unlink(missing_ok=True)
            removed.append(entry.name)
    return removed


def _umask() -> int:
    """The process umask (mkstemp creates files 0600; finished artifacts get the usual mode)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "wb") -> Iterator[BinaryIO]:
    """Open a temporary file for writing that replaces ``path`` when closed cleanly."""
    with atomic_path(path) as tmp, open(tmp, mode) as handle:
        yield handle


def write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Atomically write ``data`` to ``path``."""
    with atomic_open(path, "wb") as handle:
        handle.write(data)


def write_text(path: str | os.PathLike[str], text: str) -> None:
    """Atomically write UTF-8 ``text`` to ``path``."""
    write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Atomically write ``obj`` as indented JSON (keys in insertion order)."""
    write_text(path, json.dumps(obj, indent=2, default=_json_default) + "\n")


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serializable: {type(obj).__name__}")


def parse_json(data: bytes | str, where: str, hint: str | None, max_bytes: int) -> Any:
    """JSON from a file we did not write: its size bounded before parsing, and any nesting too deep to parse
    (``RecursionError``), bad UTF-8 or bad JSON an ``InputError`` naming ``where``."""
    if len(data) > max_bytes:
        raise InputError(f"{where} is {len(data):,} bytes, more than such a record can be ({max_bytes:,})", hint=hint)
    try:
        return json.loads(data)
    except RecursionError:
        raise InputError(f"{where} is nested too deeply to be a record of ours", hint=hint) from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"{where} is not valid JSON ({shorten(exc)})", hint=hint) from None


def read_json(path: str | os.PathLike[str], where: str | None, hint: str | None, max_bytes: int) -> Any:
    """``parse_json`` of a file, refusing one larger than ``max_bytes`` before reading it."""
    path = Path(path)
    size = path.stat().st_size
    if size > max_bytes:
        raise InputError(f"{where or path} is {size:,} bytes, more than such a record can be ({max_bytes:,})", hint=hint)
    with open(path, "rb") as handle:
        data = handle.read(max_bytes + 1)
    return parse_json(data, where or str(path), hint, max_bytes)


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike[str], chunk_size: int = 1 << 20) -> str:
    """Hex sha256 of a file's content, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()
