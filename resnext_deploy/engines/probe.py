"""What every registered engine can do on this machine, and what ``--backend auto`` picks (for `doctor`, reports).

Each engine is asked the way a run would ask it (its ``Backend``'s availability, with the reason and
the install hint), so `doctor` says exactly what an export or `predict` would find.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import sys
from importlib import metadata
from typing import Any

from resnext_deploy.engines.cuda import cuda_devices, driver_version
from resnext_deploy.engines.registry import REGISTRY, package_names
from resnext_deploy.engines.select import auto_rule
from resnext_deploy.errors import NotAvailableError
from resnext_deploy.layout import PRECISIONS


@dataclasses.dataclass(frozen=True)
class EngineStatus:
    """One engine here: installed, usable (and why not, with the fix), its version and engine-specific facts."""

    name: str
    title: str
    installed: bool
    usable: bool
    version: str | None
    why: str  # the availability line: "OpenVINO 2026.4.1 on CPU", "tensorrt not installed"
    hint: str  # what to do when not usable ("" when usable)
    details: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _version(distributions: tuple[str, ...], module: str) -> str | None:
    """The installed version of the engine's own distribution (e.g. onnxruntime or onnxruntime-gpu)."""
    for name in distributions:
        if name.replace("-", "_").startswith(module):
            try:
                return metadata.version(name)
            except metadata.PackageNotFoundError:
                continue
    return None


def engine_status(name: str) -> EngineStatus:
    """Ask one registered engine whether it runs here."""
    spec = REGISTRY[name]
    module = spec.module or spec.name
    try:
        installed = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a module in sys.modules without a spec, or a broken parent package
        installed = False
    backend = spec.backend()
    availability = getattr(backend, "availability", None)
    usable, why, hint = availability() if availability is not None else (*backend.available(), "")
    details: dict[str, Any] = {}
    if usable and spec.details is not None:
        try:
            details = spec.details()
        except Exception as exc:  # a probe of a third-party library must never break `doctor`
            details = {"error": f"{type(exc).__name__}: {exc}"}
    version = _version(spec.packages, module) or (getattr(sys.modules.get(module), "__version__", None) if usable else None)
    return EngineStatus(spec.name, spec.title, installed, bool(usable), version, why,
                        "" if usable else (hint or spec.install_hint), details)


def auto_choices(machine: str | None = None) -> dict[str, dict[str, str]]:
    """What ``--backend auto`` picks here for each precision, with the one-line reason."""
    choices = {}
    for precision in PRECISIONS:
        try:
            backend, reason = auto_rule(precision, machine)
        except NotAvailableError as exc:  # not even the default engine runs here
            choices[precision] = {"backend": "", "reason": f"none: {exc.message}"}
            continue
        choices[precision] = {"backend": backend.name, "reason": reason}
    return choices


def gpu_facts() -> dict[str, Any]:
    """CUDA devices and the CUDA version of the driver (empty lists / None without a driver)."""
    return {"devices": [dataclasses.asdict(gpu) for gpu in cuda_devices()], "cuda_driver": driver_version()}


@functools.cache
def engines_record() -> dict[str, Any]:
    """Every engine's status, auto's choices and the GPU facts, asked once per process (for reports)."""
    return {"engines": [engine_status(name).to_dict() for name in REGISTRY], "auto": auto_choices(), "gpu": gpu_facts()}


def engine_packages() -> tuple[str, ...]:
    """Distribution names of every engine's libraries, whose versions the environment record lists."""
    return package_names()
