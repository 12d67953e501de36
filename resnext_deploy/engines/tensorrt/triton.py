"""Serving a TensorRT plan with Triton: what the server needs to be told, and what its release ships.

Triton's ``tensorrt_backend`` loads a version-compatible plan only when the server runs with
``--backend-config=tensorrt,version-compatible=true`` (the plan embeds its lean runtime as host
code, which the backend refuses otherwise). A plan that is not version-compatible runs only on
the TensorRT version that built it, so the version a Triton release ships matters: the table is
Triton's own Release Compatibility Matrix (docs/introduction/compatibility.html, the one table it
publishes, for the ``<release>-trtllm-python-py3`` containers; the ``-py3`` containers may differ
and are listed in NVIDIA's Frameworks Support Matrix). Triton sends batches from 1 (a single
request, or whatever dynamic batching formed), so a plan's profile must start at batch 1.
"""

from __future__ import annotations

from typing import Any

from resnext_deploy.errors import InputError

VERSION_COMPATIBLE_ARG = "--backend-config=tensorrt,version-compatible=true"
TRITON_TENSORRT = {  # Triton release -> TensorRT version of its trtllm-python-py3 container
    "24.05": "10.0.1.6", "24.06": "10.0.1", "24.07": "10.1.0", "24.08": "10.3.0", "24.09": "10.4.0", "24.10": "10.4.0",
    "24.11": "10.6.0", "24.12": "10.7.0", "25.01": "10.8.0.43", "25.06": "10.10.0.31", "25.07": "10.10.0.31",
    "25.08": "10.11.0.33", "25.09": "10.11.0.33", "25.10": "10.11.0.33", "25.11": "10.13.3.9", "25.12": "10.13.3.9",
}


def serve_args(target: dict[str, Any]) -> tuple[str, ...]:
    """The ``tritonserver`` arguments a plan needs beyond ``--model-repository``."""
    return (VERSION_COMPATIBLE_ARG,) if target.get("version_compatible") else ()


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(".")[:3] if part.isdigit())


def check_target(target: dict[str, Any], release: str | None = None) -> list[str]:
    """Refuse a plan Triton cannot feed (profile minimum above 1); warnings about ``release``'s TensorRT version."""
    profile = next(iter((target.get("profile") or {}).values()), {})
    low = int((profile.get("min") or [1])[0])
    if low > 1:
        raise InputError(
            f"the TensorRT engine's profile starts at batch {low}, but Triton sends batches from 1 (single requests, "
            "and whatever dynamic batching forms)",
            hint="rebuild the engine with --min-batch 1 (`resnext-deploy build BUNDLE --backend tensorrt --min-batch 1`)",
        )
    if release is None:
        return []
    shipped = TRITON_TENSORRT.get(release)
    if shipped is None:
        return [f"no TensorRT version recorded for Triton {release} (known: {', '.join(TRITON_TENSORRT)}): "
                "check its release notes"]
    built = str(target.get("tensorrt_version") or "")
    if not built:
        return [f"the bundle does not record which TensorRT built the plan; Triton {release} ships TensorRT {shipped}"]
    have, need = _version(shipped), _version(built)
    if target.get("version_compatible"):
        if have[:1] != need[:1] or have < need:
            return [f"the plan is version-compatible with TensorRT {need[0]}.x from {built} on, but Triton {release} "
                    f"ships TensorRT {shipped}: pick a Triton release with TensorRT {need[0]}.x >= {built}"]
        return []
    if have != need:
        return [f"the plan was built by TensorRT {built}, Triton {release} ships TensorRT {shipped}: it will not load "
                "there; build it with that TensorRT (or --version-compatible), or pick the Triton release that ships "
                f"TensorRT {'.'.join(map(str, need))}"]
    return []
