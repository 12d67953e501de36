"""Whether the NVIDIA driver is new enough for the installed TensorRT wheel, checked before any build.

TensorRT's pip wheels come in one build per CUDA major (``tensorrt-cu12``, ``tensorrt-cu13``; the
``tensorrt`` metapackage picks cu12 for 10.x and cu13 for 11.x), and a CUDA major needs a driver
that supports at least its ``.0`` release (CUDA minor-version compatibility covers the rest):
CUDA 12 needs Linux driver 525 or newer, CUDA 13 needs 580 or newer. An older driver otherwise
surfaces deep inside the build as a generic CUDA error. JetPack's TensorRT (system packages, no
wheel metadata) matches its own CUDA and is not checked.
"""

from __future__ import annotations

import importlib.metadata
import re

# CUDA major -> the oldest Linux driver branch that supports its .0 release (NVIDIA's CUDA release notes, table 3)
MIN_LINUX_DRIVER = {12: "525.60.13", 13: "580.65.06"}
_WHEEL = re.compile(r"^tensorrt[-_]cu(\d+)(?:[-_](?:libs|bindings))?$", re.IGNORECASE)


def _installed() -> dict[str, str]:
    return {dist.metadata["Name"]: dist.version for dist in importlib.metadata.distributions() if dist.metadata["Name"]}


def tensorrt_wheel_cuda(installed: dict[str, str] | None = None) -> tuple[int, str] | None:
    """(CUDA major, wheel name) of the installed TensorRT wheel, or None when TensorRT did not come from pip."""
    installed = _installed() if installed is None else installed
    for name in sorted(installed):
        match = _WHEEL.match(name)
        if match:
            return int(match.group(1)), f"tensorrt-cu{match.group(1)} {installed[name]}"
    for name in ("tensorrt-libs", "tensorrt_libs", "tensorrt"):  # before the -cuXX names: 10.x was CUDA 12
        version = installed.get(name)
        if version and version.split(".")[0].isdigit():
            major = int(version.split(".")[0])
            if major == 10:
                return 12, f"{name} {version}"
            if major >= 11:
                return 13, f"{name} {version}"
    return None


def driver_problem(driver_cuda: tuple[int, int] | None, wheel: tuple[int, str] | None) -> tuple[str, str] | None:
    """None when the driver can run the wheel's CUDA build; else (what is wrong, exactly what to install)."""
    if driver_cuda is None or wheel is None:
        return None  # no driver: reported as "no CUDA device"; no wheel: JetPack or a tar install, not ours to judge
    major, name = wheel
    if driver_cuda >= (major, 0):
        return None
    have = f"{driver_cuda[0]}.{driver_cuda[1]}"
    driver = MIN_LINUX_DRIVER.get(major)
    message = f"the NVIDIA driver supports CUDA {have}, but {name} is built for CUDA {major}"
    older = max((m for m in MIN_LINUX_DRIVER if m <= driver_cuda[0]), default=None)
    hint = f"install NVIDIA driver {driver} or newer (CUDA {major}.0 or newer)" if driver else f"install a driver for CUDA {major}"
    if older is not None and older != major:
        hint += (f", or the CUDA {older} build of TensorRT with the CUDA {older} builds of torch and onnxruntime-gpu: "
                 f"pip uninstall tensorrt-cu{major} tensorrt-cu{major}-libs tensorrt-cu{major}-bindings && "
                 f"pip install 'tensorrt-cu{older}>=10.13.2,<12'")
    return message, hint
