"""Every backend, registered once: the CLI's choices, bundles, Triton export and verification read this.

Modelled on MMDeploy's backend managers and Polygraphy's ``backend/<name>/`` folders: a backend is
one folder under ``engines/`` whose ``spec.py`` declares an :class:`~resnext_deploy.engines.base.EngineSpec` (name, availability,
build/load through its ``Backend``, sidecar naming, bundle target record and mismatch check, default
INT8 recipe, Triton entry), plus one line in ``REGISTRY`` below. The order of ``REGISTRY`` is the
order in which ``--backend auto`` considers them. Nothing here imports a backend library.
"""

from __future__ import annotations

from pathlib import Path

from resnext_deploy.engines.base import EngineFile, EngineSpec
from resnext_deploy.engines.onnxruntime.spec import SPEC as ONNXRUNTIME
from resnext_deploy.engines.openvino.spec import SPEC as OPENVINO
from resnext_deploy.engines.tensorrt.spec import SPEC as TENSORRT
from resnext_deploy.errors import UsageError

AUTO = "auto"


REGISTRY: dict[str, EngineSpec] = {
    TENSORRT.name: TENSORRT,  # NVIDIA GPUs: first wherever it really runs
    OPENVINO.name: OPENVINO,  # x86-64 CPUs, for the precisions where it measured faster (auto_precisions)
    ONNXRUNTIME.name: ONNXRUNTIME,  # everywhere else: the default
}
DEFAULT_BACKEND = ONNXRUNTIME.name


def backend_names(*, with_auto: bool = True) -> tuple[str, ...]:
    """``--backend`` choices: ``auto`` then every registered backend."""
    return ((AUTO,) if with_auto else ()) + tuple(REGISTRY)


def get_spec(name: str) -> EngineSpec:
    """The registered spec of backend ``name``; ``UsageError`` listing the choices otherwise."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise UsageError(f"unknown backend {name!r}", hint=f"use one of: {', '.join(backend_names())}") from None


def default_recipe(backend: str) -> str:
    """The INT8 recipe `--recipe auto` means for ``backend`` (``auto`` -> the default backend's)."""
    return get_spec(DEFAULT_BACKEND if backend == AUTO else backend).default_recipe


def spec_for_sidecar(file_name: str) -> EngineSpec | None:
    """The backend whose engine sidecars are named like ``file_name``, or None."""
    return next((spec for spec in REGISTRY.values() if file_name.endswith(spec.sidecar_suffix)), None)


def sidecar_suffixes() -> tuple[str, ...]:
    """Every backend's sidecar suffix (to find engine sidecars among a directory's files)."""
    return tuple(spec.sidecar_suffix for spec in REGISTRY.values())


def package_names() -> tuple[str, ...]:
    """Distribution names of every backend's libraries, for the environment record."""
    return tuple(name for spec in REGISTRY.values() for name in spec.packages)


def engine_spec_for_file(path: Path) -> EngineSpec | None:
    """The backend whose built engine files are named like ``path`` (``model.int8.engine``), or None."""
    return next((spec for spec in REGISTRY.values()
                 if spec.engine_suffix and spec.read_engine_file and Path(path).name.endswith(spec.engine_suffix)), None)


def read_engine_file(path: Path) -> EngineFile:
    """A built engine file with its sidecar; ``UsageError`` for a file no backend runs alone."""
    spec = engine_spec_for_file(path)
    if spec is None or spec.read_engine_file is None:
        suffixes = [s.engine_suffix for s in REGISTRY.values() if s.engine_suffix]
        raise UsageError(f"{path} is not an engine file this toolchain runs", hint=f"pass a file ending in {', '.join(suffixes)}")
    return spec.read_engine_file(Path(path))
