"""Which files of a folder were opened, by any code of any process (C++ libraries included): Linux inotify.

Python's audit hooks only see opens made through Python; ONNX Runtime and OpenVINO open their model
files from C++, so "nothing outside the bundle folder is opened" needs the kernel's view.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import struct
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

IN_OPEN = 0x00000020
IN_NONBLOCK = 0o4000
_EVENT = struct.Struct("iIII")


@contextlib.contextmanager
def opened_files(folder: Path) -> Iterator[list[str]]:
    """Yield a list that holds, after the block, the names of ``folder``'s files opened inside it."""
    if not sys.platform.startswith("linux"):
        pytest.skip("inotify is Linux-only")
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    fd = libc.inotify_init1(IN_NONBLOCK)
    if fd < 0 or libc.inotify_add_watch(fd, os.fsencode(folder), IN_OPEN) < 0:
        pytest.skip(f"inotify unavailable (errno {ctypes.get_errno()})")
    names: list[str] = []
    try:
        yield names
        while True:
            try:
                data = os.read(fd, 65536)
            except BlockingIOError:
                break
            offset = 0
            while offset < len(data):
                _, mask, _, length = _EVENT.unpack_from(data, offset)
                raw = data[offset + _EVENT.size : offset + _EVENT.size + length].rstrip(b"\0")
                if mask & IN_OPEN:
                    names.append(os.fsdecode(raw) or ".")
                offset += _EVENT.size + length
    finally:
        os.close(fd)
