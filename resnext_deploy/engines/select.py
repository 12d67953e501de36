"""Pick a backend by name; ``auto`` follows a fixed rule over the registry and says why in one line.

The rule (``auto_rule``): walk ``REGISTRY`` in order and take the first backend that prefers the
artifact's precision on this kind of machine (``EngineSpec.auto_precisions``/``auto_machines``, set
from measurements, see docs/DESIGN.md) and is available here; otherwise the default backend (ONNX
Runtime), which runs everywhere. No timing run happens per export.
"""

from __future__ import annotations

import platform
from pathlib import Path

from resnext_deploy.engines.base import Backend
from resnext_deploy.engines.registry import AUTO, DEFAULT_BACKEND, REGISTRY, backend_names, default_recipe, get_spec
from resnext_deploy.errors import NotAvailableError, UsageError


def resolve_fallback_precision(backend: str, requested: str) -> tuple[str, str]:
    """(float type, why) that layers kept out of INT8 run in on ``backend`` here; ``auto`` is the engine's fastest.

    ``UsageError`` (exit 2, before any work) when the engine cannot run the type asked for on this machine.
    """
    spec = get_spec(backend)
    offered = spec.fallback_precisions()
    if requested == AUTO:
        return offered[0], f"{AUTO}: {offered[0]}, the fastest float type {spec.title} runs here (of {', '.join(offered)})"
    if requested not in offered:
        raise UsageError(f"{spec.title} cannot run layers kept out of INT8 in {requested} on this machine",
                         hint=f"use --fallback-precision {' or '.join((AUTO, *offered))}, or another --backend")
    return requested, "requested"


def _require(name: str) -> Backend:
    """The named backend, or ``NotAvailableError`` (exit 2) saying why and how to install it."""
    spec = get_spec(name)
    backend = spec.backend()
    ok, why, hint = backend.availability()
    if not ok:
        raise NotAvailableError(f"{spec.title} backend is not available: {why}", hint=hint or spec.install_hint)
    return backend


def auto_rule(precision: str | None = None, machine: str | None = None) -> tuple[Backend, str]:
    """The backend ``auto`` means here for ``precision`` (None: any), and the one-line reason."""
    machine = machine or platform.machine()
    skipped: list[str] = []
    for spec in REGISTRY.values():
        if spec.name == DEFAULT_BACKEND:
            break
        if precision is not None and precision not in spec.auto_precisions:
            skipped.append(f"{spec.name} not preferred at {precision}")
            continue
        if spec.auto_machines and machine not in spec.auto_machines:
            skipped.append(f"{spec.name} measured only on {'/'.join(spec.auto_machines)}")
            continue
        backend = spec.backend()
        ok, why = backend.available()
        if ok:
            return backend, f"{AUTO}: {spec.name} ({why})"
        skipped.append(why)
    default = _require(DEFAULT_BACKEND)
    return default, f"{AUTO}: {DEFAULT_BACKEND}" + (f" ({'; '.join(skipped)})" if skipped else "")


def resolve_backend(name: str, precision: str | None = None) -> tuple[Backend, str]:
    """The backend for ``name`` and a one-line reason, e.g. ``auto: onnxruntime (openvino not installed)``.

    A named backend that cannot run here raises ``NotAvailableError`` naming how to install it.
    """
    if name not in backend_names():
        raise UsageError(f"unknown backend {name!r}", hint=f"use one of: {', '.join(backend_names())}")
    if name == AUTO:
        return auto_rule(precision)
    return _require(name), f"{name}: requested"


def check_artifact(name: str, onnx_path: Path) -> None:
    """Refuse, before any availability check, an ONNX artifact backend ``name`` cannot take (exit 2 with the fix)."""
    if name != AUTO:
        check = get_spec(name).check_artifact
        if check is not None:
            check(Path(onnx_path))


def select_for(name: str, artifact: Path | None, precision: str | None) -> tuple[Backend, str]:
    """The backend for ``name`` (``auto`` or a registered one) to run ``artifact``, and why, in one line.

    An artifact the named backend cannot take is refused first (exit 2 with the command that makes the
    right one), before its availability is checked, so a CPU machine says what a GPU machine would.
    """
    if artifact is not None:
        check_artifact(name, artifact)
    return resolve_backend(name, precision)


def engine_recipe(backend: str, recipe: str, targets: tuple[str, ...] = ()) -> str:
    """The INT8 recipe ``backend``'s engine is built from: its own recipe's artifact when the export makes it
    (``--recipe``, or a ``--targets`` backend sharing it), else the ``--recipe`` artifact."""
    own = default_recipe(backend)
    made = {recipe if recipe != AUTO else own, *(default_recipe(target) for target in targets)}
    return own if own in made else recipe


def check_engine_recipe(backend: str, recipe: str, targets: tuple[str, ...] = ()) -> None:
    """Refuse (``UsageError``, exit 2), before any heavy work, an INT8 export whose engine would be built from a
    recipe's artifact ``backend`` cannot take (TensorRT parses only its own, symmetric, recipe)."""
    if backend == AUTO:
        return
    spec = get_spec(backend)
    used = engine_recipe(backend, recipe, targets)
    if spec.int8_recipes and used not in spec.int8_recipes:
        raise UsageError(
            f"--backend {backend} cannot build an engine from the {used} recipe's INT8 artifact "
            f"({spec.title} takes the {', '.join(spec.int8_recipes)} recipe's Q/DQ only)",
            hint=f"drop --recipe (auto picks {spec.default_recipe}), add --targets {used},{backend} to make both "
            "artifacts, or pass --no-engine",
        )

