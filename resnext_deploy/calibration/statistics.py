"""Activation statistics with ONNX Runtime's calibrators, collected once and reused by every recipe.

``quantize_static`` calibrates and quantizes in one call; here the two halves are split:
``create_calibrator`` runs the (pre-processed) FP32 graph over the calibration images in small
chunks (histogram calibrators keep a whole chunk's activations in memory), and the resulting
``TensorsData`` ranges are cached and handed to the quantizer of either recipe.
Ranges are calibrated unsymmetric; a recipe with symmetric activations symmetrizes them itself.
"""

from __future__ import annotations

import contextlib
import io
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from resnext_deploy.console import progress_bar
from resnext_deploy.errors import InputError, UsageError

METHODS = ("entropy", "minmax", "percentile")
DEFAULT_PERCENTILE = 99.999
ENTROPY_BINS = 128  # ORT default; 512/2048 bins clipped harder (worse cosine) and 2048 took minutes
ENTROPY_QUANTIZED_BINS = 128
PERCENTILE_BINS = 2048
HISTOGRAM_CHUNK = 4
# MinMax keeps every activation of a chunk until it folds them into the ranges (~120 MB per 224x224
# image for resnext50d_32x4d), so the chunk bounds calibration's peak memory; min/max ranges do not
# depend on the chunking, so cached statistics stay valid.
MINMAX_CHUNK = 8


def check_method(method: str) -> str:
    """Validate a calibration method name (UsageError listing the valid ones)."""
    if method not in METHODS:
        raise UsageError(
            f"unknown calibration method {method!r}", hint=f"choose one of: {', '.join(METHODS)}"
        )
    return method


def method_params(method: str, percentile: float = DEFAULT_PERCENTILE) -> dict[str, Any]:
    """The parameters a method's statistics depend on (part of the cache key)."""
    check_method(method)
    if method == "entropy":
        return {"num_bins": ENTROPY_BINS, "num_quantized_bins": ENTROPY_QUANTIZED_BINS, "symmetric": False}
    if method == "percentile":
        if not 0.0 < float(percentile) <= 100.0:
            raise UsageError(f"percentile must be in (0, 100], got {percentile}", hint="for example 99.999")
        return {"num_bins": PERCENTILE_BINS, "percentile": float(percentile), "symmetric": False}
    return {"symmetric": False}


def ort_method(method: str) -> Any:
    """The ``CalibrationMethod`` member for one of our method names."""
    from onnxruntime.quantization import CalibrationMethod

    return {"entropy": CalibrationMethod.Entropy, "minmax": CalibrationMethod.MinMax,
            "percentile": CalibrationMethod.Percentile}[method]


class _BatchReader:
    """A ``CalibrationDataReader`` over a list of NCHW float32 batches."""

    def __init__(self, input_name: str, batches: list[np.ndarray]) -> None:
        self._input_name = input_name
        self._batches = iter(batches)

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._batches, None)
        return None if batch is None else {self._input_name: batch}


def iter_chunks(calibration: np.ndarray | Iterable[np.ndarray], chunk: int) -> Iterator[np.ndarray]:
    """Split an (N,3,H,W) array or an iterable of such batches into contiguous float32 chunks."""
    batches = [calibration] if isinstance(calibration, np.ndarray) else calibration
    for batch in batches:
        array = np.asarray(batch)
        if array.ndim != 4 or array.shape[1] != 3:
            raise InputError(
                f"calibration data must be (N, 3, H, W), got shape {tuple(array.shape)}",
                hint="pass preprocessed images, for example from resnext_deploy.calibration.load_images",
            )
        if not np.issubdtype(array.dtype, np.floating):
            raise InputError(f"calibration data must be float32, got {array.dtype}", hint="normalize the images first")
        for start in range(0, len(array), chunk):
            yield np.ascontiguousarray(array[start : start + chunk], dtype=np.float32)


def collect_statistics(
    model_path: Path,
    calibration: np.ndarray | Iterable[np.ndarray],
    method: str,
    params: dict[str, Any],
    *,
    input_name: str = "input",
    progress: bool = True,
    work_dir: Path | None = None,
) -> tuple[Any, dict[str, tuple[Any, ...]] | None, int]:
    """Run ORT's calibrator over the images; return (TensorsData, raw histograms or None, image count).

    The augmented model goes to a temporary folder inside ``work_dir`` (default: the system's).
    """
    from onnxruntime.quantization import create_calibrator

    calib_options = {k: v for k, v in params.items() if k in ("num_bins", "num_quantized_bins", "percentile", "symmetric")}
    histogram = method != "minmax"
    chunk = HISTOGRAM_CHUNK if histogram else MINMAX_CHUNK
    count = 0
    with tempfile.TemporaryDirectory(prefix="resnext-calib.", dir=work_dir) as tmp, _quiet():
        calibrator = create_calibrator(
            Path(model_path),
            None,
            augmented_model_path=str(Path(tmp) / "augmented.onnx"),
            calibrate_method=ort_method(method),
            extra_options=calib_options,
        )
        total = len(calibration) if isinstance(calibration, np.ndarray) else None
        with _progress_bar(progress, method, total) as advance:
            for batch in iter_chunks(calibration, chunk):
                calibrator.collect_data(_BatchReader(input_name, [batch]))
                count += len(batch)
                advance(len(batch))
        if count == 0:
            raise InputError("no calibration images", hint="pass at least one image (NVIDIA recommends 500+ for CNNs)")
        tensors = calibrator.compute_data()
        histograms = dict(calibrator.collector.histogram_dict) if histogram else None
    return tensors, histograms, count


def thresholds_from_histograms(histograms: dict[str, tuple[Any, ...]], method: str, params: dict[str, Any]) -> Any:
    """Recompute ranges from cached histograms with ORT's own collector (no inference)."""
    from onnxruntime.quantization.calibrate import HistogramCollector, TensorsData

    collector = HistogramCollector(
        method=method,
        symmetric=params.get("symmetric", False),
        num_bins=params["num_bins"],
        num_quantized_bins=params.get("num_quantized_bins", ENTROPY_QUANTIZED_BINS),
        percentile=params.get("percentile", DEFAULT_PERCENTILE),
        scenario="same",
    )
    collector.histogram_dict = dict(histograms)
    with _quiet():
        return TensorsData(ort_method(method), collector.compute_collection_result())


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence ORT's calibrator prints on stdout (progress goes through our own bar on stderr)."""
    with contextlib.redirect_stdout(io.StringIO()):
        yield


@contextlib.contextmanager
def _progress_bar(enabled: bool, method: str, total: int | None) -> Iterator[Any]:
    with progress_bar(enabled) as bar:
        task = bar.add_task(f"calibrating ({method})", total=total)
        yield lambda n: bar.advance(task, n)
