"""The names inside an export directory, spelled once.

Every stage that writes or reads an export directory takes its file names from here, so a new
artifact or a renamed one is one edit. Engine files are named by their backend (``engines/``).
"""

from __future__ import annotations

PRECISIONS = ("fp32", "fp16", "int8")
# what a layer kept out of INT8 by mixed precision may run in (`--fallback-precision`; "auto": the engine's first)
FALLBACK_PRECISIONS = ("fp32", "bf16", "fp16")
FP32_NAME = "model.onnx"
REPORT_NAME = "report.json"
REPORT_MD_NAME = "report.md"
LATENCY_PLOT_NAME = "latency.png"
CALIBRATION_DIR = "calibration"
CALIBRATION_MANIFEST = f"{CALIBRATION_DIR}/manifest.json"
STATS_PREFIX = f"{CALIBRATION_DIR}/stats-"
SENSITIVITY_NAME = "sensitivity.json"
SENSITIVITY_PLOT_NAME = "sensitivity.png"
LOCK_NAME = ".resnext.lock"  # holder's pid, host and command while a run writes the directory
STAGING_DIR = ".resnext-staging"  # a run's work in progress; whatever a killed run left is removed at the next start
TOP_LEVEL_OWNED = (REPORT_NAME, REPORT_MD_NAME, LATENCY_PLOT_NAME, SENSITIVITY_NAME, SENSITIVITY_PLOT_NAME)


MAX_NAME = 255  # bytes of one file name on the usual file systems


def is_plain_name(name: object) -> bool:
    """Whether ``name`` is one file name (no folder part, no ``..``): what a sidecar may name beside itself."""
    return (isinstance(name, str) and 0 < len(name) <= MAX_NAME and name not in (".", "..")
            and not any(ch in name for ch in "/\\\x00"))


def artifact_name(precision: str, target: str | None = None) -> str:
    """File name of a precision artifact inside an export directory: ``model.onnx``, ``model.int8.onnx``.

    ``target`` names another target's INT8 recipe made by the same export (``--targets``):
    ``model.int8.tensorrt.onnx``; ``model.int8.onnx`` is always the export's own (``--recipe``) one.
    """
    if precision == "fp32":
        return FP32_NAME
    return f"model.{precision}.onnx" if target is None else f"model.{precision}.{target}.onnx"


def split_artifact_name(file_name: str) -> tuple[str, str | None, str | None]:
    """``model.int8.tensorrt.onnx`` -> (``model``, ``int8``, ``tensorrt``); ``model.onnx`` -> (``model``, None, None)."""
    stem = file_name[: -len(".onnx")] if file_name.endswith(".onnx") else file_name
    parts = stem.split(".")
    if len(parts) >= 2 and parts[-1] in PRECISIONS:
        return ".".join(parts[:-1]), parts[-1], None
    if len(parts) >= 3 and parts[-2] in PRECISIONS:
        return ".".join(parts[:-2]), parts[-2], parts[-1]
    return stem, None, None


def stats_name(cache_file_name: str) -> str:
    """Where the calibration statistics of cache file ``cache_file_name`` are copied in the export directory."""
    return f"{STATS_PREFIX}{cache_file_name}"


# A sweep directory: one export directory per cell, one FP32 export per model, and the sweep's own outputs.
BUNDLE_MANIFEST_NAME = "manifest.json"  # a bundle folder's file list with sha256 (bundle.manifest)
SWEEP_JSON_NAME = "sweep.json"
SWEEP_MD_NAME = "sweep.md"
PARETO_PNG_NAME = "pareto.png"
SWEEP_FP32_DIR = "fp32"
SWEEP_CACHE_DIR = "cache"


def sweep_cell_dir(model: str, precision: str, backend: str) -> str:
    """A cell's export directory inside a sweep directory: ``<model>/<precision>-<backend>``."""
    return f"{model}/{precision}-{backend}"


def is_owned(relpath: str) -> bool:
    """Whether ``relpath`` (POSIX, relative to an export directory) is a file this tool writes there.

    Top-level ``model.*`` files (ONNX artifacts, engines and their sidecars), the reports and the
    calibration records; anything else in the directory belongs to the user and is never removed.
    """
    parts = relpath.split("/")
    if len(parts) == 1:
        return parts[0].startswith("model.") or parts[0] in TOP_LEVEL_OWNED
    return len(parts) == 2 and parts[0] == CALIBRATION_DIR and (
        parts[1] == "manifest.json" or (parts[1].startswith("stats-") and parts[1].endswith(".json"))
    )

