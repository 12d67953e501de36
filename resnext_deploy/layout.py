"""The names inside an export directory, spelled once.

Every stage that writes or reads an export directory takes its file names from here, so a new
artifact or a renamed one is one edit. Engine files are named by their backend (``engines/``).
"""

from __future__ import annotations

PRECISIONS = ("fp32", "fp16", "int8")
FP32_NAME = "model.onnx"
REPORT_NAME = "report.json"
REPORT_MD_NAME = "report.md"
LATENCY_PLOT_NAME = "latency.png"
CALIBRATION_DIR = "calibration"
CALIBRATION_MANIFEST = f"{CALIBRATION_DIR}/manifest.json"
STATS_PREFIX = f"{CALIBRATION_DIR}/stats-"


def artifact_name(precision: str) -> str:
    """File name of a precision artifact inside an export directory: ``model.onnx``, ``model.int8.onnx``."""
    return FP32_NAME if precision == "fp32" else f"model.{precision}.onnx"


def stats_name(cache_file_name: str) -> str:
    """Where the calibration statistics of cache file ``cache_file_name`` are copied in the export directory."""
    return f"{STATS_PREFIX}{cache_file_name}"


# A sweep directory: one export directory per cell, one FP32 export per model, and the sweep's own outputs.
SWEEP_JSON_NAME = "sweep.json"
SWEEP_MD_NAME = "sweep.md"
PARETO_PNG_NAME = "pareto.png"
SWEEP_FP32_DIR = "fp32"
SWEEP_CACHE_DIR = "cache"


def sweep_cell_dir(model: str, precision: str, backend: str) -> str:
    """A cell's export directory inside a sweep directory: ``<model>/<precision>-<backend>``."""
    return f"{model}/{precision}-{backend}"
