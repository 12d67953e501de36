"""The OpenVINO compile settings, decided once per precision and recorded in the sidecar.

* FP32 compiles strictly in f32 (``INFERENCE_PRECISION_HINT=f32``): OpenVINO's CPU default on
  AVX-512-BF16/AMX machines is bf16, which would make the "FP32" baseline a bf16 one.
* FP16 compiles at the fastest reduced float type the CPU really computes in (bf16 on
  AVX-512-BF16/AMX, f16 where the device lists FP16), else f32 (the report says so).
* INT8 runs the Q/DQ graph's convolutions as int8 kernels whatever the hint; the hint sets the
  float parts between them (see ``INT8_FLOAT_PRECISION``).
* One stream, ``LATENCY`` hint and an explicit thread count: the edge case is one request at a
  time, and a thread count left to OpenVINO would change with the machine's load.
"""

from __future__ import annotations

from typing import Any

from resnext_deploy.engines.base import BuildOptions

PERFORMANCE_HINT = "LATENCY"
NUM_STREAMS = 1
INT8_FLOAT_PRECISION = "f32"  # measured: see docs/DESIGN.md (OpenVINO INT8)
RECORDED_PROPERTIES = (
    "INFERENCE_PRECISION_HINT", "PERFORMANCE_HINT", "NUM_STREAMS", "INFERENCE_NUM_THREADS",
    "EXECUTION_MODE_HINT", "ENABLE_CPU_PINNING", "ENABLE_HYPER_THREADING",
)


_OUR_NAMES = {"f32": "fp32", "f16": "fp16", "bf16": "bf16", "i8": "int8", "u8": "uint8"}  # OpenVINO element types
_HINTS = {"bf16": ("bf16", "BF16"), "fp16": ("f16", "FP16")}  # fallback precision -> (hint, device capability)


def fallback_hint(fallback: str | None, capabilities: tuple[str, ...], float_layers: list[str] | None) -> str | None:
    """The hint for an INT8 artifact whose fallback layers ask for ``fallback`` (its ``mixed_precision`` metadata):
    bf16/f16 where this device computes in it, else None (f32, as every INT8 artifact, and one with no float layer)."""
    if not float_layers:
        return None
    hint, capability = _HINTS.get(fallback or "", (None, None))
    return hint if capability in capabilities else None


def inference_precision(precision: str, reduced: str | None, int8_float: str | None = None) -> str:
    """The float type OpenVINO computes in for an artifact of ``precision`` on a device whose best reduced type is
    ``reduced``; ``int8_float``: the INT8 artifact's float parts (``fallback_hint``), f32 without one."""
    if precision == "fp16":
        return reduced or "f32"
    if precision == "int8":
        return int8_float or INT8_FLOAT_PRECISION
    return "f32"


def compile_config(precision: str, options: BuildOptions, reduced: str | None,
                   int8_float: str | None = None) -> dict[str, str]:
    """The properties passed to ``compile_model`` (strings, as recorded)."""
    return {
        "INFERENCE_PRECISION_HINT": inference_precision(precision, reduced, int8_float),
        "PERFORMANCE_HINT": PERFORMANCE_HINT,
        "NUM_STREAMS": str(NUM_STREAMS),
        "INFERENCE_NUM_THREADS": str(options.intra_op_threads),
    }


def import_config(recorded: dict[str, str], options: BuildOptions) -> dict[str, str]:
    """The properties passed to ``import_model``: the recorded compile settings, with this run's threads.

    The CPU plugin's exported model does not pin the inference precision: ``import_model`` applies
    the precision it is given, and OpenVINO's default (bf16 on AVX-512-BF16/AMX), so it must be passed again.
    """
    return {**recorded, "INFERENCE_NUM_THREADS": str(options.intra_op_threads)}


def effective_properties(compiled: Any) -> dict[str, str]:
    """What the compiled model really runs with (OpenVINO may resolve hints differently from the request)."""
    values = {}
    for key in RECORDED_PROPERTIES:
        try:
            values[key] = _text(compiled.get_property(key))
        except RuntimeError:  # a property this plugin version does not report
            continue
    return values


def runtime_precisions(compiled: Any, layers: list[str]) -> dict[str, str | None]:
    """What each ONNX node of ``layers`` really runs in: the ``runtimePrecision`` of the compiled model's op whose
    ``originalLayersNames`` holds it (fused ops list every node they absorbed); None when none does."""
    found: dict[str, str | None] = dict.fromkeys(layers)
    wanted = set(layers)
    for op in compiled.get_runtime_model().get_ordered_ops():
        info = op.get_rt_info()
        if "originalLayersNames" not in info or "runtimePrecision" not in info:
            continue
        if info["layerType"].astype(str) in ("Const", "Reorder", "Convert"):  # not the layer's own computation
            continue
        for name in set(info["originalLayersNames"].astype(str).split(",")) & wanted:
            if found[name] is None:
                value = info["runtimePrecision"].astype(str)
                found[name] = _OUR_NAMES.get(value, value)
    return found


def _text(value: Any) -> str:
    if hasattr(value, "to_string"):  # an element type: "f32", "bf16", as the hint is spelled
        return str(value.to_string())
    name = getattr(value, "name", None)
    if isinstance(name, str) and name:
        return name
    text = str(value)
    return text.removeprefix("<Type: '").removesuffix("'>")
