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


@contextlib.contextmanager
def interruptible() -> Iterator[None]:
    """Turn SIGINT/SIGTERM into ``Interrupted`` while the block runs (main thread only; elsewhere a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.getsignal(sig) for sig in HANDLED}
    state = {"raised": False}

    def handler(signum: int, frame: FrameType | None) -> None:
        if state["raised"]:  # second signal: stop unwinding politely, die the default way
            for sig in HANDLED:
                signal.signal(sig, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        state["raised"] = True
        raise Interrupted(signum)

    for sig in HANDLED:
        signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old if old is not None else signal.SIG_DFL)
