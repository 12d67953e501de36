"""FP32 ONNX -> INT8 Q/DQ ONNX: pre-process, calibrate once (cached), quantize with a backend recipe."""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from resnext_deploy.calibration.fp16 import float_regions_to_fp16
from resnext_deploy.calibration.recipes import DEFAULT_RECIPE, Recipe, get_recipe, grouped_conv_nodes
from resnext_deploy.calibration.stats_cache import CachedStats, StatsCache, StatsKey
from resnext_deploy.calibration.statistics import (
    DEFAULT_PERCENTILE,
    check_method,
    collect_statistics,
    method_params,
    ort_method,
    thresholds_from_histograms,
)
from resnext_deploy.calibration.qdq_placement import release_conv_side_of_residual_adds
from resnext_deploy.errors import InputError, UsageError
from resnext_deploy.files import atomic_path, sha256_file
from resnext_deploy.metadata import get_metadata, set_metadata
from resnext_deploy.onnx_io import graph_inputs

LOG = logging.getLogger(__name__)


@dataclass
class QuantizationResult:
    """What ``quantize_int8`` produced, as recorded in report.json."""

    path: Path
    method: str
    recipe: str
    activation_type: str
    weight_type: str
    per_channel: bool
    activation_symmetric: bool
    keep_grouped_float: bool
    excluded_nodes: list[str]
    residual_adds_released: int  # Adds whose conv-side Q/DQ was removed so TensorRT fuses Conv+Add
    float_regions: str  # "fp32", or "fp16": what runs outside INT8 (graph I/O stays FP32 either way)
    quantize_linear_nodes: int
    dequantize_linear_nodes: int
    stats_cache_hit: bool
    stats_source: str  # "cache", "histograms" (thresholds recomputed, no inference) or "calibrated"
    stats_key: str
    stats_file: Path
    calibration_images: int
    calibration_seconds: float
    seconds: float
    method_params: dict[str, Any] = field(default_factory=dict)

    @property
    def excluded_count(self) -> int:
        return len(self.excluded_nodes)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["path"] = str(self.path)
        data["stats_file"] = str(self.stats_file)
        data["excluded_count"] = self.excluded_count
        return data


def quantize_int8(
    fp32_onnx: str | os.PathLike[str],
    output: str | os.PathLike[str],
    calibration: np.ndarray | Iterable[np.ndarray],
    *,
    manifest_sha256: str,
    method: str = "entropy",
    recipe: str | Recipe = DEFAULT_RECIPE,
    keep_grouped_float: bool | None = None,
    percentile: float = DEFAULT_PERCENTILE,
    cache_dir: str | os.PathLike[str] | None = None,
    progress: bool = True,
    calibration_record: dict[str, Any] | None = None,
) -> QuantizationResult:
    """Write an INT8 Q/DQ model of ``fp32_onnx`` to ``output`` (atomically) and describe it.

    ``calibration`` is an (N,3,H,W) float32 array or an iterable of such batches, preprocessed with
    the model's eval transform; it is not read when the statistics cache already holds
    (model sha256, ``manifest_sha256``, method, params). ``calibration_record`` (for example
    ``{"skipped": 2}``) is merged into the artifact's ``calibration`` metadata.
    """
    started = time.perf_counter()
    check_method(method)
    params = method_params(method, percentile)
    recipe_obj = recipe if isinstance(recipe, Recipe) else get_recipe(recipe, keep_grouped_float)
    fp32_onnx, output = Path(fp32_onnx), Path(output)
    if output.resolve() == fp32_onnx.resolve():
        raise UsageError(f"output {output} would overwrite the FP32 model", hint="write to model.int8.onnx")
    if isinstance(calibration, np.ndarray) and len(calibration) == 0:
        raise InputError("the calibration array is empty", hint="pass at least one preprocessed image")

    import onnx

    fp32_model = _load_fp32(fp32_onnx)
    source_meta = get_metadata(fp32_model)
    input_name = str(source_meta.get("input_name", "input"))
    _check_input(fp32_model, input_name, fp32_onnx)

    key = StatsKey(sha256_file(fp32_onnx), manifest_sha256, method, params)
    cache = StatsCache(cache_dir)
    with tempfile.TemporaryDirectory(prefix="resnext-quant.") as tmp:
        prepared = _prepare(fp32_model, Path(tmp))
        calib_started = time.perf_counter()
        stats, stats_source = _statistics(cache, key, prepared, calibration, input_name, progress)
        calib_seconds = time.perf_counter() - calib_started
        excluded = grouped_conv_nodes(onnx.load(prepared)) if recipe_obj.keep_grouped_float else []
        quantized_path = Path(tmp) / "quantized.onnx"
        _quantize(prepared, quantized_path, recipe_obj, method, excluded, stats.path)
        model = onnx.load(quantized_path)
    released = release_conv_side_of_residual_adds(model) if recipe_obj.release_residual_conv_side else []
    if recipe_obj.float_regions == "fp16":
        model, _ = float_regions_to_fp16(model)

    del model.metadata_props[:]
    calib_record = {
        "method": method,
        "recipe": recipe_obj.name,
        "size": stats.image_count,
        "manifest_sha256": manifest_sha256,
        "params": params,
        "stats_key": key.digest(),
        "keep_grouped_float": recipe_obj.keep_grouped_float,
        "float_regions": recipe_obj.float_regions,
        **(calibration_record or {}),
    }
    set_metadata(model, {**source_meta, "precision": "int8", "calibration": calib_record})
    with atomic_path(output) as tmp_out:
        onnx.save(model, os.fspath(tmp_out))

    ops = [node.op_type for node in model.graph.node]
    return QuantizationResult(
        path=output,
        method=method,
        recipe=recipe_obj.name,
        activation_type=recipe_obj.activation_type,
        weight_type=recipe_obj.weight_type,
        per_channel=recipe_obj.per_channel,
        activation_symmetric=recipe_obj.activation_symmetric,
        keep_grouped_float=recipe_obj.keep_grouped_float,
        excluded_nodes=excluded,
        residual_adds_released=len(released),
        float_regions=recipe_obj.float_regions,
        quantize_linear_nodes=ops.count("QuantizeLinear"),
        dequantize_linear_nodes=ops.count("DequantizeLinear"),
        stats_cache_hit=stats_source != "calibrated",
        stats_source=stats_source,
        stats_key=key.digest(),
        stats_file=stats.path,
        calibration_images=stats.image_count,
        calibration_seconds=round(calib_seconds, 3),
        seconds=round(time.perf_counter() - started, 3),
        method_params=params,
    )


def _load_fp32(path: Path) -> Any:
    import onnx

    if not path.is_file():
        raise InputError(f"FP32 ONNX model not found: {path}", hint="run `resnext-deploy export` first")
    try:
        return onnx.load(os.fspath(path))
    except Exception as exc:  # onnx raises DecodeError and others for damaged files
        raise InputError(f"cannot read ONNX file {path}: {exc}", hint="re-export the FP32 model") from None


def _check_input(model: Any, input_name: str, path: Path) -> None:
    """The graph must take one float32 NCHW tensor named ``input_name``."""
    inputs = graph_inputs(model)
    names = [i.name for i in inputs]
    if names != [input_name]:
        raise InputError(
            f"{path} has inputs {names}, expected one named {input_name!r}",
            hint="quantize the FP32 model written by `resnext-deploy export`",
        )
    if inputs[0].dtype != "float32" or len(inputs[0].dims) != 4:
        raise InputError(f"input {input_name!r} of {path} is not a float32 NCHW tensor", hint="re-export the model")


def _prepare(model: Any, folder: Path) -> Path:
    """ORT's quantization pre-processing (shape inference + basic optimizations), every node named."""
    import onnx
    from onnxruntime.quantization.shape_inference import quant_pre_process

    raw = folder / "fp32.onnx"
    onnx.save(model, os.fspath(raw))
    prepared = folder / "prepared.onnx"
    quant_pre_process(raw, prepared, skip_symbolic_shape=True)
    processed = onnx.load(os.fspath(prepared))
    seen: set[str] = set()
    for index, node in enumerate(processed.graph.node):
        if not node.name or node.name in seen:
            node.name = f"{node.op_type}_{index}"
        seen.add(node.name)
    onnx.save(processed, os.fspath(prepared))
    return prepared


def _statistics(
    cache: StatsCache,
    key: StatsKey,
    model_path: Path,
    calibration: np.ndarray | Iterable[np.ndarray],
    input_name: str,
    progress: bool,
) -> tuple[CachedStats, str]:
    """Cached ranges for ``key``; else recompute from cached histograms; else calibrate and cache."""
    cached = cache.load(key)
    if cached is not None:
        return cached, "cache"
    if key.method != "minmax":
        histograms = cache.load_histograms(key)
        if histograms is not None:
            tensors = thresholds_from_histograms(histograms[0], key.method, key.params)
            return cache.save(key, tensors, histograms[1]), "histograms"
    tensors, histograms, count = collect_statistics(
        model_path, calibration, key.method, key.params, input_name=input_name, progress=progress
    )
    if histograms is not None:
        cache.save_histograms(key, histograms, count)
    return cache.save(key, tensors, count), "calibrated"


def _quantize(model_path: Path, output: Path, recipe: Recipe, method: str, excluded: list[str], stats: Path) -> None:
    """ORT's ``quantize_static`` in QDQ format, reading the ranges from our cache file (no calibration)."""
    from onnxruntime.quantization import QuantFormat, quantize_static

    activation_type, weight_type = recipe.quant_types()
    with _quantizer_chatter_filtered():
        quantize_static(
            model_path,
            output,
            calibration_data_reader=None,
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=list(recipe.op_types_to_quantize) if recipe.op_types_to_quantize else None,
            per_channel=recipe.per_channel,
            activation_type=activation_type,
            weight_type=weight_type,
            nodes_to_exclude=excluded,
            calibrate_method=ort_method(method),
            extra_options=dict(recipe.extra_options),
            calibration_cache_path=stats,
        )


class _OrtQuantizerChatter(logging.Filter):
    """Drops the info/debug records logged from ``folder`` (ORT's quantizer) unless we log at debug."""

    def __init__(self, folder: str) -> None:
        super().__init__()
        self.folder = folder

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or not record.pathname.startswith(self.folder) or LOG.isEnabledFor(
            logging.DEBUG
        )


@contextlib.contextmanager
def _quantizer_chatter_filtered() -> Iterator[None]:
    """ORT's QDQ quantizer calls ``logging.info`` (the root logger) per tensor: filter those records, and
    only those, during the call. Its warnings (a tensor left unquantized...) still show; the root
    logger's level, and every other record, stay as the application configured them."""
    from onnxruntime import quantization

    chatter = _OrtQuantizerChatter(os.path.join(os.path.dirname(quantization.__file__), ""))
    root = logging.getLogger()
    root.addFilter(chatter)
    try:
        yield
    finally:
        root.removeFilter(chatter)
