"""SIGINT and SIGTERM unwind the command like an exception, so every ``finally`` cleans up.

CI timeouts send SIGTERM first; without a handler Python dies on it at once and leaves its
temporary work behind. Inside :func:`interruptible` both signals raise
:class:`~resnext_deploy.errors.Interrupted`; a second signal while unwinding kills the process
at once (what remains is in the output directory's staging folder, removed at the next start).
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator
from types import FrameType

from resnext_deploy.errors import Interrupted

HANDLED = (signal.SIGINT, signal.SIGTERM)


def _default_sigterm_in_child() -> None:
    """A child forked from this process (a library's: ours are spawned) gets the default SIGTERM disposition.

    It would otherwise inherit our Python handler, which can never run while the child is stuck in C
    (a forked child deadlocked on the loader's lock ignored SIGTERM and hung its parent at exit).
    """
    with contextlib.suppress(ValueError, OSError):
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_default_sigterm_in_child)


_received: list[int] = []  # the signal that interrupted the current block, if any


def received() -> int | None:
    """The signal that interrupted the current ``interruptible`` block, or None.

    A library may turn the ``Interrupted`` raised inside it into its own error (pybind11 reports an
    exception during a C extension's import as ``ImportError: initialization failed``); the caller asks
    here so that the run still ends as interrupted, not as that error.
    """
    return _received[0] if _received else None


@contextlib.contextmanager
def interruptible() -> Iterator[None]:
    """Turn SIGINT/SIGTERM into ``Interrupted`` while the block runs (main thread only; elsewhere a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.getsignal(sig) for sig in HANDLED}
    state = {"raised": False}
    _received.clear()

    def handler(signum: int, frame: FrameType | None) -> None:
        if state["raised"]:  # second signal: stop unwinding politely, die the default way
            for sig in HANDLED:
                signal.signal(sig, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        state["raised"] = True
        _received.append(signum)
        raise Interrupted(signum)

    for sig in HANDLED:
        signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old if old is not None else signal.SIG_DFL)
