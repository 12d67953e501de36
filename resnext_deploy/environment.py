"""What machine and which library versions produced a result."""

from __future__ import annotations

import os
import platform
from importlib import metadata
from typing import Any

PACKAGES = ("resnext-deploy", "torch", "timm", "onnx", "onnxsim", "onnxscript", "onnxconverter-common", "numpy")


def package_versions() -> dict[str, str]:
    """Installed versions of the packages that shape the numbers, every backend's included (absent ones left out)."""
    from resnext_deploy.engines.registry import package_names

    versions = {}
    for name in dict.fromkeys((*PACKAGES, *package_names())):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def cpu_model() -> str:
    """The CPU's marketing name from /proc/cpuinfo, or what platform knows."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def describe() -> dict[str, Any]:
    """The environment block of report.json."""
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "packages": package_versions(),
    }


def toolchain_version() -> str:
    try:
        return metadata.version("resnext-deploy")
    except metadata.PackageNotFoundError:
        return "0+unknown"
