"""Which CUDA devices this machine really has, read from the driver with ctypes.

The driver API (``libcuda``) is asked directly so no CUDA toolkit, torch or TensorRT import is
needed, and nothing is loaded until a function here is called.
"""

from __future__ import annotations

import ctypes
import dataclasses
import functools
import sys

_CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR = 75
_CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR = 76


@dataclasses.dataclass(frozen=True)
class GpuInfo:
    """One CUDA device: its name and compute capability (e.g. ``"9.0"``)."""

    index: int
    name: str
    compute_capability: str


def _load_driver() -> ctypes.CDLL | None:
    names = ["nvcuda.dll"] if sys.platform == "win32" else ["libcuda.so.1", "libcuda.so"]
    for name in names:
        try:
            return ctypes.CDLL(name)
        except OSError:
            continue
    return None


@functools.cache
def cuda_devices() -> tuple[GpuInfo, ...]:
    """Every CUDA device the driver reports (honours CUDA_VISIBLE_DEVICES); empty without a driver."""
    driver = _load_driver()
    if driver is None or driver.cuInit(0) != 0:
        return ()
    count = ctypes.c_int(0)
    if driver.cuDeviceGetCount(ctypes.byref(count)) != 0:
        return ()
    devices = []
    for index in range(count.value):
        device = ctypes.c_int(0)
        if driver.cuDeviceGet(ctypes.byref(device), index) != 0:
            continue
        name = ctypes.create_string_buffer(256)
        driver.cuDeviceGetName(name, len(name), device)
        major, minor = ctypes.c_int(0), ctypes.c_int(0)
        driver.cuDeviceGetAttribute(ctypes.byref(major), _CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, device)
        driver.cuDeviceGetAttribute(ctypes.byref(minor), _CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, device)
        devices.append(GpuInfo(index, name.value.decode(errors="replace"), f"{major.value}.{minor.value}"))
    return tuple(devices)


def driver_cuda_version(driver: object | None = None) -> tuple[int, int] | None:
    """The newest CUDA version the installed NVIDIA driver supports (``cuDriverGetVersion``: 13000 -> (13, 0)).

    None without a driver. The call needs no ``cuInit`` and no device.
    """
    driver = _load_driver() if driver is None else driver
    if driver is None:
        return None
    version = ctypes.c_int(0)
    if driver.cuDriverGetVersion(ctypes.byref(version)) != 0 or version.value <= 0:  # type: ignore[attr-defined]
        return None
    return version.value // 1000, version.value % 1000 // 10


def has_cuda_device() -> bool:
    """Whether at least one CUDA device is present."""
    return bool(cuda_devices())


@functools.cache
def driver_version() -> str | None:
    """The CUDA version the installed driver supports (``cuDriverGetVersion``, e.g. ``"12.4"``), None without a driver."""
    driver = _load_driver()
    if driver is None:
        return None
    version = ctypes.c_int(0)
    if driver.cuDriverGetVersion(ctypes.byref(version)) != 0 or version.value <= 0:
        return None
    return f"{version.value // 1000}.{version.value % 1000 // 10}"
