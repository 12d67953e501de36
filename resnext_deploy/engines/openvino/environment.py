"""What an exported OpenVINO compiled model depends on: the OpenVINO version, the device and the CPU.

A compiled CPU model holds kernels chosen for the instruction set it was compiled on (AVX-512,
VNNI, BF16, AMX), and OpenVINO refuses blobs of another build; the sidecar records both so a load
can say why it recompiles instead of failing inside ``import_model``.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

from resnext_deploy.environment import cpu_fingerprint

DEVICE = "CPU"


@functools.cache
def core() -> Any:
    """One ``openvino.Core`` per process (it loads the device plugins once)."""
    import openvino as ov

    return ov.Core()


@functools.cache
def capabilities(device: str = DEVICE) -> tuple[str, ...]:
    """The device's optimization capabilities, e.g. ``('BF16', 'FP32', 'INT8', 'EXPORT_IMPORT')``."""
    import openvino.properties.device as device_props

    return tuple(str(c) for c in core().get_property(device, device_props.capabilities))


def reduced_float_precision(caps: tuple[str, ...]) -> str | None:
    """The fastest reduced float type the device really computes in: bf16 (AVX-512-BF16, AMX), else f16, else None."""
    if "BF16" in caps:
        return "bf16"
    if "FP16" in caps:
        return "f16"
    return None


@dataclasses.dataclass(frozen=True)
class OvEnvironment:
    """The runtime facts an exported compiled model must match."""

    openvino_version: str
    device: str
    device_name: str
    capabilities: tuple[str, ...]
    cpu: dict[str, str]

    @classmethod
    def current(cls, device: str = DEVICE) -> OvEnvironment:
        """This process's OpenVINO build, device and CPU."""
        import openvino as ov
        import openvino.properties.device as device_props

        name = str(core().get_property(device, device_props.full_name))
        return cls(ov.get_version(), device, name, capabilities(device), cpu_fingerprint())

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready view for the sidecar."""
        return {
            "openvino_version": self.openvino_version,
            "device": {"name": self.device, "full_name": self.device_name, "capabilities": list(self.capabilities)},
            "cpu": self.cpu,
        }

    def mismatch(self, recorded: dict[str, Any]) -> str | None:
        """Why a sidecar's environment differs from this one, or None when it matches."""
        if recorded.get("openvino_version") != self.openvino_version:
            return f"OpenVINO {recorded.get('openvino_version')} compiled it, this is {self.openvino_version}"
        device = recorded.get("device") or {}
        if device.get("name") != self.device:
            return f"it was compiled for device {device.get('name')}, not {self.device}"
        cpu = recorded.get("cpu") or {}
        if cpu != self.cpu:
            return f"it was compiled on another CPU ({cpu.get('model') or cpu.get('machine')!s}, other instruction set)"
        return None
