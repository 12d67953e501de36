"""Durable atomic writes, and the translation of machine failures into user-facing errors."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest

from resnext_deploy.errors import EXIT_BAD_INPUT, InputError, Interrupted, OutputError, from_exception
from resnext_deploy.files import write_bytes


def test_atomic_writes_fsync_the_file_and_its_folder(tmp_path: Path, monkeypatch) -> None:
    synced: list[str] = []
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        synced.append("dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    write_bytes(tmp_path / "artifact.bin", b"finished")
    assert synced == ["file", "dir"]  # data before the rename is visible, the rename before we return
    assert (tmp_path / "artifact.bin").read_bytes() == b"finished"
    assert [p.name for p in tmp_path.iterdir()] == ["artifact.bin"]


@pytest.mark.parametrize(("exc", "kind", "text"), [
    (OSError(errno.ENOSPC, "No space left on device", "/out/model.onnx"), OutputError, "No space left on device: /out/model.onnx"),
    (OSError(errno.EACCES, "Permission denied", "/root/x"), InputError, "Permission denied: /root/x"),
    (IsADirectoryError(errno.EISDIR, "Is a directory", "/tmp"), InputError, "Is a directory: /tmp"),
    (OSError(errno.EIO, "Input/output error"), OutputError, "Input/output error"),
    (UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte"), InputError, "not UTF-8 text"),
])
def test_machine_and_encoding_failures_become_exit_2(exc: BaseException, kind: type, text: str) -> None:
    known = from_exception(exc)
    assert isinstance(known, kind) and known.exit_code == EXIT_BAD_INPUT
    assert text in known.message and known.hint


def test_bugs_stay_bugs_and_signals_keep_their_numbers() -> None:
    assert from_exception(KeyError("x")) is None and from_exception(OSError("no errno: a library's own failure")) is None
    assert Interrupted(15).exit_code == 143 and Interrupted(2).exit_code == 130


def test_an_interruption_a_library_turned_into_its_own_error_still_exits_as_interrupted() -> None:
    """pybind11 reports an exception raised during a C extension's import as ImportError: the run still ends 143."""
    import os
    import signal

    import typer
    from typer.testing import CliRunner

    from resnext_deploy.cli._errors import handles_errors

    @handles_errors
    def command() -> None:
        try:
            os.kill(os.getpid(), signal.SIGTERM)  # our handler raises Interrupted at the next bytecode
            raise AssertionError("the handler did not run")
        except BaseException:  # what a C extension's import does with the Interrupted raised in it
            raise ImportError("initialization failed") from None

    app = typer.Typer()
    app.command()(command)
    result = CliRunner().invoke(app, [])
    assert result.exit_code == 143 and "interrupted (SIGTERM)" in result.output


def test_a_child_forked_from_our_process_gets_the_default_sigterm_disposition() -> None:
    """A library's forked child must die on SIGTERM even while our handler is installed in the parent."""
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent("""
        import os, signal, sys
        from resnext_deploy.signals import interruptible
        with interruptible():
            assert signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, None)  # ours, in the parent
            pid = os.fork()
            if pid == 0:
                os._exit(0 if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL else 1)
            _, status = os.waitpid(pid, 0)
        sys.exit(os.waitstatus_to_exitcode(status))
    """)
    assert subprocess.run([sys.executable, "-c", script], timeout=120).returncode == 0
