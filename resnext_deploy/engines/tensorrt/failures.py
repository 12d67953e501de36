"""What went wrong inside TensorRT, by kind: out of GPU memory, the driver, a graph the parser refuses.

Polygraphy turns every TensorRT failure into a ``PolygraphyException`` with a generic message
("Invalid Engine. Please ensure the engine was built correctly", "`execute_async_v3()` failed.
Please see the logging output above for details."); the cause is in what TensorRT logged just
before, which Polygraphy's TensorRT logger prints to ``sys.stdout``. So a build or an inference
runs with stdout passed through a tee that keeps the last lines, and the exception's text plus
the error lines among them decide the kind, hence the exit code and the hint (warnings are not
read: a build that succeeds also warns of tactics skipped for insufficient memory).
"""

from __future__ import annotations

import collections
import contextlib
import io
import re
import sys
from collections.abc import Iterator
from typing import TextIO

from resnext_deploy.errors import DeployError, InputError, NotAvailableError

KINDS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("out of memory", re.compile(
        r"out of memory|OutOfMemory|cudaErrorMemoryAllocation|CUDA Error: 2\b|insufficient (?:device |GPU )?memory|"
        r"Requested amount of GPU memory|std::bad_alloc", re.IGNORECASE)),
    ("driver", re.compile(
        r"driver version is insufficient|cudaErrorInsufficientDriver|CUDA Error: 35\b|CUDA initialization failure|"
        r"no CUDA-capable device|cudaErrorNoDevice|CUDA Error: 100\b|CUDA driver", re.IGNORECASE)),
    ("parse", re.compile(
        r"Could not parse ONNX|Failed to parse ONNX|ModelImporter|onnx2trt|UNSUPPORTED_NODE|In node -?\d+|"
        r"Invalid network", re.IGNORECASE)),
)

HINTS = {
    "out of memory": "free GPU memory (nvidia-smi lists the processes holding it), or lower --max-batch "
                     "(and --workspace-mb); then retry",
    "driver": "update the NVIDIA driver to one for your TensorRT wheel's CUDA version (nvidia-smi shows the driver's); "
              "`resnext-deploy export --backend tensorrt` says which one it needs",
    "parse": "the ONNX must parse strongly typed (FP32, FP16 or Q/DQ INT8 made with --recipe tensorrt); re-export it "
             "and see TensorRT's log above for the node it refused",
}
LOG_LINES = 200
ERROR_LINE = re.compile(r"\[E\]|\[!\]|\bERROR\b|Error Code \d+")  # Polygraphy's error and critical prefixes, TensorRT's


class LogTail(io.TextIOBase):
    """A text stream that writes through to ``target`` and keeps its last ``lines`` lines."""

    def __init__(self, target: TextIO, lines: int = LOG_LINES) -> None:
        self.target = target
        self.lines: collections.deque[str] = collections.deque(maxlen=lines)
        self._partial = ""

    def write(self, text: str) -> int:
        self.target.write(text)
        parts = (self._partial + text).split("\n")
        self._partial = parts.pop()
        self.lines.extend(parts)
        return len(text)

    def flush(self) -> None:
        self.target.flush()

    def isatty(self) -> bool:
        return self.target.isatty()

    @property
    def text(self) -> str:
        return "\n".join([*self.lines, self._partial])


@contextlib.contextmanager
def log_tail() -> Iterator[LogTail]:
    """Pass ``sys.stdout`` through a ``LogTail`` while TensorRT works (its log reaches us through Polygraphy's)."""
    tail = LogTail(sys.stdout)
    with contextlib.redirect_stdout(tail):  # type: ignore[type-var]
        yield tail


def failure_kind(*texts: str) -> str | None:
    """``out of memory``, ``driver`` or ``parse`` when the texts say so (in that order of precedence), else None."""
    joined = "\n".join(texts)
    return next((kind for kind, pattern in KINDS if pattern.search(joined)), None)


def tensorrt_error(what: str, exc: BaseException, log: str = "", default: type[DeployError] = InputError,
                   default_hint: str = "see TensorRT's log above; run with --debug for the traceback") -> DeployError:
    """The error to raise for ``exc`` raised by TensorRT (through Polygraphy) while doing ``what``.

    Out of memory and driver failures are machine problems (``NotAvailableError``, exit 2) and a
    refused graph is bad input (``InputError``, exit 2), each with its own hint; anything else is
    ``default`` with ``default_hint``.
    """
    errors = "\n".join(line for line in log.splitlines() if ERROR_LINE.search(line))
    kind = failure_kind(str(exc), errors)
    message = f"{what}: {type(exc).__name__}: {exc}" if not isinstance(exc, DeployError) else f"{what}: {exc.message}"
    if kind == "parse":
        return InputError(f"{message} (TensorRT's parser refused the graph)", hint=HINTS[kind])
    if kind is not None:
        return NotAvailableError(f"{message} ({kind})", hint=HINTS[kind])
    return default(message, hint=default_hint)
