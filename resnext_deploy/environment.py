"""What machine and which library versions produced a result."""

from __future__ import annotations

import functools
import hashlib
import os
import platform
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGES = ("resnext-deploy", "torch", "timm", "onnx", "onnxsim", "onnxscript", "onnxconverter-common", "numpy")

# CPU features that decide which kernels the engines use (``/proc/cpuinfo`` flag names): INT8 dot products
# (VNNI; Arm dotprod/i8mm), bf16 arithmetic (AVX-512 BF16; Arm bf16) and Intel's matrix units (AMX)
CPU_FEATURES: dict[str, tuple[str, ...]] = {
    "AVX2": ("avx2",),
    "AVX-512": ("avx512f",),
    "VNNI": ("avx512_vnni", "avx_vnni"),
    "AVX-512 BF16": ("avx512_bf16",),
    "AMX": ("amx_tile", "amx_int8", "amx_bf16"),
    "Arm dot product": ("asimddp",),
    "Arm i8mm": ("i8mm",),
    "Arm bf16": ("bf16",),
}


def disable_telemetry() -> None:
    """Turn off the telemetry of the libraries we load, each the way it allows, before it loads; nothing is written.

    ONNX Runtime (1DS SDK on Linux and macOS since 1.2x): ``ORT_DISABLE_TELEMETRY=1`` before it initializes
    stops the uploader, the events and the device id it keeps in ``~/.cache/Microsoft/DeveloperTools``
    (its docs/Privacy.md); ``disable_telemetry_events()`` would come after its first event. OpenVINO:
    ``import openvino`` runs ``openvino_telemetry``, which writes ``~/intel/stats`` and ``openvino_ga_cid``
    and forks a sender from a worker thread; its off switches write under ``$HOME`` (``opt_in_out
    --opt_out``) or claim a CI run (``CI=true``), so we take the path OpenVINO itself provides for a missing
    telemetry package (``openvino.tools.ovc.telemetry_stub``) by making ``openvino_telemetry`` unimportable
    in this process; too late once something imported openvino first.
    """
    os.environ["ORT_DISABLE_TELEMETRY"] = "1"
    # absent from sys.modules unless OpenVINO (or the host program) already loaded it; then it is too late
    sys.modules.setdefault("openvino_telemetry", None)  # type: ignore[arg-type]  # import fails: OpenVINO uses its stub


def package_versions(extra: tuple[str, ...] = ()) -> dict[str, str]:
    """Installed versions of the packages that shape the numbers and of ``extra`` (absent ones left out).

    The backends' packages come from the engine registry, which the callers above the ground pass in
    (``engines.registry.package_names()``): this module knows the machine, not the rooms.
    """
    versions = {}
    for name in dict.fromkeys((*PACKAGES, *extra)):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


@functools.cache
def _cpuinfo() -> dict[str, str]:
    """The first value of each key of ``/proc/cpuinfo`` (Linux; empty elsewhere)."""
    info: dict[str, str] = {}
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return info
    for line in text.splitlines():
        key, _, value = line.partition(":")
        info.setdefault(key.strip(), value.strip())
    return info


def cpu_model() -> str:
    """The CPU's marketing name (x86 ``model name``, Arm ``Processor``/``cpu model``), else what platform knows."""
    info = _cpuinfo()
    for key in ("model name", "Processor", "cpu model"):
        if info.get(key):
            return info[key]
    return platform.processor() or platform.machine()


def cpu_flags() -> frozenset[str]:
    """The CPU feature flags (x86 ``flags``, Arm ``Features``; empty where ``/proc/cpuinfo`` is absent)."""
    info = _cpuinfo()
    return frozenset((info.get("flags") or info.get("Features") or "").split())


def cpu_features(flags: frozenset[str] | None = None) -> dict[str, list[str]]:
    """The features of ``CPU_FEATURES`` this CPU has, each with the flags that show it (absent ones left out)."""
    flags = cpu_flags() if flags is None else flags
    found = {label: [f for f in names if f in flags] for label, names in CPU_FEATURES.items()}
    return {label: names for label, names in found.items() if names}


def cpu_fingerprint() -> dict[str, str]:
    """Machine, OS, CPU model and a digest of the CPU feature flags: what a CPU-specific artifact depends on."""
    flags = " ".join(sorted(cpu_flags()))
    return {
        "machine": platform.machine(),
        "system": platform.system(),
        "model": cpu_model(),
        "flags_sha256": hashlib.sha256(flags.encode()).hexdigest(),
    }


def usable_cores() -> int:
    """The cores this process may run on (its affinity mask: taskset, cgroup cpusets), else every core; at least 1."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def describe(packages: tuple[str, ...] = ()) -> dict[str, Any]:
    """What the ground knows of this machine: Python, platform, CPU and its kernel-relevant features, cores, and
    the versions of our packages plus ``packages`` (``resnext_deploy.machine.describe`` adds engines and GPUs)."""
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu": cpu_model(),
        "cpu_features": cpu_features(),
        "cpu_count": os.cpu_count(),
        "usable_cores": usable_cores(),
        "packages": package_versions(packages),
    }


def toolchain_version() -> str:
    try:
        return metadata.version("resnext-deploy")
    except metadata.PackageNotFoundError:
        return "0+unknown"
