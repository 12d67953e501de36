"""Which CPU this is: the facts a CPU-specific compiled model (ONNX Runtime, OpenVINO) depends on."""

from __future__ import annotations

import functools
import hashlib
import platform
from pathlib import Path


@functools.cache
def cpu_flags() -> frozenset[str]:
    """The CPU feature flags (``/proc/cpuinfo`` on Linux; empty elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("flags", "Features"):
                return frozenset(value.split())
    except OSError:
        pass
    return frozenset()


@functools.cache
def cpu_fingerprint() -> dict[str, str]:
    """Machine, CPU model and a digest of the CPU feature flags (``/proc/cpuinfo`` on Linux)."""
    model = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Processor", "cpu model") and not model:
                model = value.strip()
                break
    except OSError:
        pass
    flags = " ".join(sorted(cpu_flags()))
    return {
        "machine": platform.machine(),
        "system": platform.system(),
        "model": model,
        "flags_sha256": hashlib.sha256(flags.encode()).hexdigest(),
    }
