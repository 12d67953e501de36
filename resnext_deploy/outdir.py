"""The export directory as a unit: one writer at a time, work staged inside it, artifacts checked on read.

* **Lock**: a run that writes a directory holds ``fcntl.flock`` on ``DIR/.resnext.lock`` (holder's
  pid, host and command written in it); a second run is refused at once, naming the holder. The
  kernel drops the lock when the holder dies, so a killed run never leaves a stale lock.
* **Staging**: an export writes everything into ``DIR/.resnext-staging/`` (temporary work included)
  and moves the finished files into ``DIR`` at the end (:func:`commit`), removing what an earlier
  run left that this run did not produce. Whatever a killed run left in the staging folder is
  removed at the next start, under the lock.
* **Run**: :func:`output_directory` puts lock, staging and the refusal to overwrite without
  ``--force`` together for one run.
* **Reading**: names read from report.json must stay inside the directory, and every artifact must
  still have the sha256 and precision report.json recorded (:func:`check_artifacts`).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import posixpath
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from resnext_deploy.errors import InputError, OutputError
from resnext_deploy.files import fsync_dir, remove_stale_temporaries, sha256_file
from resnext_deploy.layout import LOCK_NAME, PRECISIONS, REPORT_NAME, STAGING_DIR, is_owned
from resnext_deploy.metadata import read_metadata
from resnext_deploy.report import Report

_REPORT_HINT = "report.json was edited or damaged; re-run `resnext-deploy export` for this directory"
_held: dict[Path, int] = {}  # directories this process has locked -> nesting depth (the lock is re-entrant)


def artifact_path(directory: Path, name: object, what: str = "artifact") -> Path:
    """``directory/name`` for a name recorded in report.json, refused (``InputError``) before anything is read
    when it is absolute, climbs out with ``..``, or leads out through a link."""
    if not isinstance(name, str) or not name or "\\" in name or "\x00" in name:
        raise InputError(f"report.json names the {what} {name!r}, which is not a relative file name", hint=_REPORT_HINT)
    normalized = posixpath.normpath(name)
    if posixpath.isabs(name) or normalized in (".", "..") or normalized.startswith("../"):
        raise InputError(f"report.json names the {what} {name!r}, a path outside {directory}; refused", hint=_REPORT_HINT)
    path = Path(directory) / normalized
    if not path.resolve().is_relative_to(Path(directory).resolve()):
        raise InputError(f"report.json names the {what} {name!r}, which leads outside {directory} through a link; refused",
                         hint=_REPORT_HINT)
    return path


def _holder_text(fd: int) -> str:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        holder = json.loads(os.read(fd, 65536).decode("utf-8") or "{}")
    except (OSError, ValueError, RecursionError):
        holder = {}
    if not isinstance(holder, dict):
        holder = {}
    if not holder:
        return "another resnext-deploy run"
    command = " ".join(holder.get("command") or []) or "?"
    return f"pid {holder.get('pid')} on {holder.get('host')} (`{command}`, since {holder.get('started')})"


@contextlib.contextmanager
def locked(directory: Path, command: list[str] | None = None, *, required: bool = True) -> Iterator[None]:
    """Hold the directory's lock for the block (re-entrant in this process); ``OutputError`` naming the holder if busy.

    ``required=False`` (a reader such as `package`): a directory where no lock file can be created
    (read-only) is used without one.
    """
    import fcntl

    directory = Path(directory)
    key = directory.resolve()
    if key in _held:
        _held[key] += 1
        try:
            yield
        finally:
            _held[key] -= 1
        return
    path = directory / LOCK_NAME
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
        except OSError as exc:
            if not required:
                yield
                return
            raise OutputError(f"cannot write to {directory}: {exc.strerror or exc}", hint="choose a writable --output directory") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = _holder_text(fd)
            os.close(fd)
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            raise OutputError(f"{directory} is in use by {holder}",
                              hint="wait until that run finishes, or write to another --output directory") from None
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # the previous holder removed the file between our open and flock: take the new one
    record = {"pid": os.getpid(), "host": socket.gethostname(), "command": list(command or []),
              "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    os.ftruncate(fd, 0)
    os.write(fd, json.dumps(record).encode("utf-8"))
    _held[key] = 1
    try:
        yield
    finally:
        del _held[key]
        with contextlib.suppress(OSError):
            path.unlink()  # while still holding it, so nobody can take a file that is about to vanish
        os.close(fd)


def staging_dir(directory: Path) -> Path:
    return Path(directory) / STAGING_DIR


def remove_leftovers(directory: Path) -> None:
    """Remove what an earlier, killed run left: the staging folder and hidden temporary files (hold the lock)."""
    staging = staging_dir(directory)
    if staging.is_symlink() or staging.is_file():
        staging.unlink()
    shutil.rmtree(staging, ignore_errors=True)
    remove_stale_temporaries(directory)


def remove_dead_leftovers(directory: Path) -> bool:
    """Remove what a killed run left when no live run holds the lock (the lock knows: the kernel dropped a dead
    holder's); True when leftovers were removed. A live holder's staging folder is its own and stays."""
    directory = Path(directory)
    staging = staging_dir(directory)
    if not (staging.exists() or staging.is_symlink()) or directory.resolve() in _held:
        return False
    try:
        with locked(directory):
            remove_leftovers(directory)
    except OutputError:  # busy (a live run) or not writable: nothing of ours to remove
        return False
    return True


def reset_staging(directory: Path) -> Path:
    """A fresh, empty staging folder, after removing an earlier run's leftovers; call it only while holding the lock."""
    remove_leftovers(directory)
    staging = staging_dir(directory)
    staging.mkdir(parents=True)
    return staging


def remove_staging(directory: Path) -> None:
    shutil.rmtree(staging_dir(directory), ignore_errors=True)


def owned_files(directory: Path) -> set[str]:
    """Files of ``directory`` (POSIX relative paths) that this tool writes (see ``layout.is_owned``)."""
    directory = Path(directory)
    found: set[str] = set()
    if not directory.is_dir():
        return found
    for entry in directory.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            found |= {f"{entry.name}/{sub.name}" for sub in entry.iterdir() if is_owned(f"{entry.name}/{sub.name}")}
        elif is_owned(entry.name):
            found.add(entry.name)
    return found


def commit(staged: Path, directory: Path) -> list[str]:
    """Move every file of ``staged`` into ``directory``; remove owned files of an earlier run this run did not write.

    report.json goes first (removed) and last (moved in), so at every moment either no report exists or
    the report describes exactly the files present. Returns the names of the stale files removed.
    """
    staged, directory = Path(staged), Path(directory)
    produced = sorted(p.relative_to(staged).as_posix() for p in staged.rglob("*") if p.is_file() and not p.is_symlink())
    stale = sorted(owned_files(directory) - set(produced))
    (directory / REPORT_NAME).unlink(missing_ok=True)
    for name in stale:
        (directory / name).unlink(missing_ok=True)
    ordered = [name for name in produced if name != REPORT_NAME] + ([REPORT_NAME] if REPORT_NAME in produced else [])
    folders = set()
    for name in ordered:
        target = directory / name
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staged / name, target)
        folders.add(target.parent)
    for folder in folders | {directory}:
        fsync_dir(folder)
    for name in stale:
        parent = (directory / name).parent
        if parent != directory and parent.is_dir() and not any(parent.iterdir()):
            parent.rmdir()
    return stale


def record_checksums(directory: Path, report: Report) -> None:
    """``report.checksums``: the sha256 of every artifact ``report.artifacts`` names, for :func:`check_artifacts`."""
    checksums: dict[str, str] = {}
    for name in _artifact_names(report):
        path = artifact_path(directory, name)
        if path.is_file():
            checksums[name] = sha256_file(path)
    report.checksums = checksums


def _names(value: Any) -> list[Any]:
    """The file names of one ``artifacts`` entry: a name, a list of names, or a table of them (recipe -> name)."""
    if isinstance(value, dict):
        return list(value.values())
    return list(value) if isinstance(value, list) else [value]


def _artifact_table(report: Report) -> dict[str, Any]:
    """``report.artifacts`` as written: key -> a name, or a table of names (recipes)."""
    return {key: value for key, value in report.artifacts.model_dump(exclude_none=True).items() if value}


def _artifact_names(report: Report) -> list[str]:
    return list(dict.fromkeys(name for value in _artifact_table(report).values() for name in _names(value)))


def check_artifacts(directory: Path, report: Report, keys: tuple[str, ...] | None = None) -> None:
    """Every artifact report.json names (or those under ``keys``) is inside the directory, has the sha256
    recorded at export time, and an ONNX precision artifact carries that precision in its own metadata."""

    directory = Path(directory)
    checksums = report.checksums or {}
    for key, value in _artifact_table(report).items():
        if keys is not None and key not in keys:
            continue
        for name in _names(value):
            path = artifact_path(directory, name, f"{key} artifact")
            if not path.is_file():
                raise InputError(f"{path} is missing from the export directory", hint="re-run `resnext-deploy export` for it")
            recorded = checksums.get(name)
            if recorded is not None and sha256_file(path) != recorded:
                raise InputError(
                    f"{name} is not the file this export wrote (its sha256 differs from report.json): it was replaced or modified",
                    hint="restore the file, or re-run `resnext-deploy export` for this directory",
                )
            if key in PRECISIONS:
                found = read_metadata(path).get("precision")
                if found != key:
                    raise InputError(
                        f"{name} holds a {found or 'unknown'} model, but report.json lists it as the {key} artifact "
                        "(files swapped or replaced)",
                        hint="restore the files, or re-run `resnext-deploy export` for this directory",
                    )


def check_existing(directory: Path, force: bool) -> None:
    """Refuse to overwrite an earlier export's files without ``--force``."""
    existing = sorted(owned_files(directory))
    if existing and not force:
        remove_dead_leftovers(directory)  # refused, but a killed run's staging folder does not stay behind
        raise OutputError(
            f"{directory} already holds {', '.join(existing[:4])}{', ...' if len(existing) > 4 else ''}",
            hint="pass --force to replace that export (only this run's files remain), or choose another --output directory",
        )


def _make_dir(directory: Path) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot write to {directory}: {exc.strerror or exc}", hint="choose a writable --output directory") from None


@contextlib.contextmanager
def output_directory(directory: Path, force: bool, command: list[str]) -> Iterator[Path]:
    """Lock ``directory`` for the run and yield a fresh staging folder inside it.

    What an earlier, killed run left in the staging folder is removed first; the staging folder is
    removed at the end, and so is ``directory`` itself when this run created it and failed.
    """
    created = not directory.exists()
    check_existing(directory, force)
    _make_dir(directory)
    try:
        with locked(directory, command):
            check_existing(directory, force)
            try:
                yield reset_staging(directory)
            finally:
                remove_staging(directory)
    except BaseException:
        if created:
            with contextlib.suppress(OSError):
                directory.rmdir()  # only when empty: nothing of ours, nothing of the user's
        raise


def prepare_output_dir(directory: Path, force: bool, names: tuple[str, ...]) -> None:
    """Create ``directory`` and make sure it is writable and holds none of ``names`` (a sweep's own folder)."""
    existing = [name for name in dict.fromkeys(names) if (directory / name).exists()]
    if existing and not force:
        raise OutputError(
            f"{directory} already holds {', '.join(existing)}",
            hint="pass --force to overwrite, or choose another --output directory",
        )
    _make_dir(directory)
    try:
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise OutputError(
            f"cannot write to {directory}: {exc.strerror or exc}", hint="choose a writable --output directory"
        ) from None
