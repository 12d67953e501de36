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
from resnext_deploy.calibration.qdq_placement import release_conv_side_of_residual_adds
from resnext_deploy.calibration.recipes import DEFAULT_RECIPE, Recipe, get_recipe, grouped_conv_nodes
from resnext_deploy.calibration.statistics import (
    DEFAULT_PERCENTILE,
    check_method,
    collect_statistics,
    method_params,
    ort_method,
    thresholds_from_histograms,
)
from resnext_deploy.calibration.stats_cache import CachedStats, StatsCache, StatsKey
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
    float_layers: list[str] = field(default_factory=list)  # mixed-precision fallback, in the recipe's float precision

    @property
    def excluded_count(self) -> int:
        return len(self.excluded_nodes)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["path"] = str(self.path)
        data["stats_file"] = str(self.stats_file)
        data["excluded_count"] = self.excluded_count
        return data


@dataclass
class QuantizationSetup:
    """The FP32 graph pre-processed once with its statistics and recipe: quantize it with any layers in float.

    Mixed-precision fallback quantizes the same graph many times with different layers left out;
    pre-processing and statistics are paid once here.
    """

    fp32_model: Any  # onnx.ModelProto as read (its metadata goes onto every artifact)
    prepared_path: Path  # ORT-pre-processed graph, every node named (the names `float_layers` refer to)
    recipe: Recipe
    method: str
    params: dict[str, Any]
    key: StatsKey
    stats: CachedStats
    stats_source: str
    calibration_seconds: float
    recipe_excluded: list[str]  # nodes the recipe itself leaves in float (grouped convs)
    float_precision_applied: str = "fp32"  # what represent_float_regions last gave the float layers

    def prepared_model(self) -> Any:
        """The pre-processed FP32 graph (a fresh ``onnx.ModelProto``)."""
        import onnx

        return onnx.load(os.fspath(self.prepared_path))

    def quantize(self, float_layers: Iterable[str] = (), *, represent: bool = True) -> tuple[Any, list[str]]:
        """(Q/DQ model, residual Adds released) with ``float_layers`` left out of INT8.

        Float regions get the recipe's ``float_regions`` unless ``represent`` is off (the
        sensitivity analysis rewrites the FP32-region graph the quantizer wrote).
        """
        import onnx

        excluded = list(dict.fromkeys([*self.recipe_excluded, *float_layers]))
        output = self.prepared_path.with_name(f"quantized-{len(excluded)}.onnx")
        _quantize(self.prepared_path, output, self.recipe, self.method, excluded, self.stats.path)
        model = onnx.load(os.fspath(output))
        output.unlink()
        released = release_conv_side_of_residual_adds(model) if self.recipe.release_residual_conv_side else []
        if represent:
            model, self.float_precision_applied = represent_float_regions(model, self.recipe)
        return model, released


def represent_float_regions(model: Any, recipe: Recipe) -> tuple[Any, str]:
    """The Q/DQ model with its float regions (every layer not in INT8: grouped convs the recipe keeps,
    mixed-precision fallback layers, pooling, the head) in the recipe's ``float_regions``.

    Returns (model, precision applied). FP32 regions are what ORT's quantizer writes; FP16 regions
    (``calibration.fp16.float_regions_to_fp16``) are for engines that run exactly the graph's types.
    """
    if recipe.float_regions == "fp16":
        return float_regions_to_fp16(model)[0], "fp16"
    return model, "fp32"


@dataclass(frozen=True)
class QuantizeConfig:
    """How an INT8 artifact is made, in one record (the shape of ONNX Runtime's ``StaticQuantConfig``).

    ``manifest_sha256`` names the calibration images (with the FP32 model's sha256, the method and
    its parameters it keys the statistics cache); ``recipe`` is a recipe name or object.
    """

    manifest_sha256: str
    method: str = "entropy"
    recipe: str | Recipe = DEFAULT_RECIPE
    keep_grouped_float: bool | None = None
    percentile: float = DEFAULT_PERCENTILE
    cache_dir: str | os.PathLike[str] | None = None
    progress: bool = True
    work_dir: str | os.PathLike[str] | None = None  # temporary models go to a folder inside it (default: the system's)

    def recipe_object(self) -> Recipe:
        return self.recipe if isinstance(self.recipe, Recipe) else get_recipe(self.recipe, self.keep_grouped_float)


@contextlib.contextmanager
def prepare_quantization(
    fp32_onnx: str | os.PathLike[str],
    calibration: np.ndarray | Iterable[np.ndarray] | None,
    config: QuantizeConfig,
    *,
    stats_file: str | os.PathLike[str] | None = None,
) -> Iterator[QuantizationSetup]:
    """Pre-process ``fp32_onnx`` and get its statistics in a temp folder (inside ``work_dir``; default: the system's).

    Statistics come from the cache, else from ``stats_file`` (the copy an export directory keeps)
    when its key matches, else from calibrating on ``calibration`` (an array, or batches streamed:
    only a chunk is in memory at a time).
    """
    import onnx

    method = config.method
    check_method(method)
    params = method_params(method, config.percentile)
    recipe_obj = config.recipe_object()
    fp32_onnx = Path(fp32_onnx)
    if isinstance(calibration, np.ndarray) and len(calibration) == 0:
        raise InputError("the calibration array is empty", hint="pass at least one preprocessed image")
    fp32_model = _load_fp32(fp32_onnx)
    input_name = str(get_metadata(fp32_model).get("input_name", "input"))
    _check_input(fp32_model, input_name, fp32_onnx)
    key = StatsKey(sha256_file(fp32_onnx), config.manifest_sha256, method, params)
    cache = StatsCache(config.cache_dir)
    with tempfile.TemporaryDirectory(prefix="resnext-quant.", dir=config.work_dir) as tmp:
        prepared = _prepare(fp32_model, Path(tmp))
        tensors = calibrated_tensors(prepared)
        if stats_file is not None and cache.load(key, tensors) is None:
            cache.adopt(stats_file, key, tensors)
        started = time.perf_counter()
        stats, stats_source = _statistics(cache, key, prepared, calibration, input_name, config.progress, Path(tmp), tensors)
        seconds = time.perf_counter() - started
        excluded = grouped_conv_nodes(onnx.load(prepared)) if recipe_obj.keep_grouped_float else []
        yield QuantizationSetup(fp32_model, prepared, recipe_obj, method, params, key, stats, stats_source,
                                round(seconds, 3), excluded)


def quantize_int8(
    fp32_onnx: str | os.PathLike[str],
    output: str | os.PathLike[str],
    calibration: np.ndarray | Iterable[np.ndarray] | None,
    config: QuantizeConfig,
    *,
    calibration_record: dict[str, Any] | None = None,
    float_layers: Iterable[str] = (),
) -> QuantizationResult:
    """Write an INT8 Q/DQ model of ``fp32_onnx`` to ``output`` (atomically) and describe it.

    ``calibration`` is an (N,3,H,W) float32 array or an iterable of such batches, preprocessed with
    the model's eval transform; it is not read when the statistics cache already holds
    (model sha256, ``config.manifest_sha256``, method, params). ``calibration_record`` (for example
    ``{"skipped": 2}``) is merged into the artifact's ``calibration`` metadata. ``float_layers``
    are node names left out of INT8 (mixed precision), in the recipe's float precision. Temporary
    models go to a folder inside ``config.work_dir`` (default: the system's temporary folder).
    """
    started = time.perf_counter()
    fp32_onnx, output = Path(fp32_onnx), Path(output)
    if output.resolve() == fp32_onnx.resolve():
        raise UsageError(f"output {output} would overwrite the FP32 model", hint="write to model.int8.onnx")
    with prepare_quantization(fp32_onnx, calibration, config) as setup:
        model, released = setup.quantize(float_layers)
    write_int8(setup, model, output, calibration_record)
    return describe_int8(setup, model, output, released, list(float_layers), time.perf_counter() - started)


def write_int8(setup: QuantizationSetup, model: Any, output: Path, calibration_record: dict[str, Any] | None = None,
               extra_metadata: dict[str, Any] | None = None) -> None:
    """Stamp the artifact's metadata (the FP32 model's, precision, calibration record) and save it atomically."""
    import onnx

    del model.metadata_props[:]
    calib_record = {
        "method": setup.method,
        "recipe": setup.recipe.name,
        "size": setup.stats.image_count,
        "manifest_sha256": setup.key.manifest_sha256,
        "params": setup.params,
        "stats_key": setup.key.digest(),
        "keep_grouped_float": setup.recipe.keep_grouped_float,
        "float_regions": setup.recipe.float_regions,
        **(calibration_record or {}),
    }
    set_metadata(model, {**get_metadata(setup.fp32_model), "precision": "int8", "calibration": calib_record,
                         **(extra_metadata or {})})
    with atomic_path(output) as tmp_out:
        onnx.save(model, os.fspath(tmp_out))


def describe_int8(setup: QuantizationSetup, model: Any, output: Path, released: list[str], float_layers: list[str],
                  seconds: float) -> QuantizationResult:
    """The report record of an INT8 artifact made from ``setup``."""
    ops = [node.op_type for node in model.graph.node]
    recipe = setup.recipe
    return QuantizationResult(
        path=output,
        method=setup.method,
        recipe=recipe.name,
        activation_type=recipe.activation_type,
        weight_type=recipe.weight_type,
        per_channel=recipe.per_channel,
        activation_symmetric=recipe.activation_symmetric,
        keep_grouped_float=recipe.keep_grouped_float,
        excluded_nodes=list(setup.recipe_excluded),
        residual_adds_released=len(released),
        float_regions=recipe.float_regions,
        quantize_linear_nodes=ops.count("QuantizeLinear"),
        dequantize_linear_nodes=ops.count("DequantizeLinear"),
        stats_cache_hit=setup.stats_source != "calibrated",
        stats_source=setup.stats_source,
        stats_key=setup.key.digest(),
        stats_file=setup.stats.path,
        calibration_images=setup.stats.image_count,
        calibration_seconds=setup.calibration_seconds,
        seconds=round(seconds, 3),
        method_params=setup.params,
        float_layers=float_layers,
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


def calibrated_tensors(model_path: Path) -> frozenset[str]:
    """The tensors ORT's calibrator measures in ``model_path`` (its own selection rule, all op types)."""
    import types

    import onnx
    from onnxruntime.quantization.calibrate import CalibraterBase

    model = onnx.shape_inference.infer_shapes(onnx.load(os.fspath(model_path)))
    selected, _ = CalibraterBase.select_tensors_to_calibrate(types.SimpleNamespace(op_types_to_calibrate=None), model)
    return frozenset(selected)


def _statistics(
    cache: StatsCache,
    key: StatsKey,
    model_path: Path,
    calibration: np.ndarray | Iterable[np.ndarray] | None,
    input_name: str,
    progress: bool,
    work_dir: Path | None = None,
    tensors: frozenset[str] | None = None,
) -> tuple[CachedStats, str]:
    """Cached ranges for ``key`` (holding exactly ``tensors``); else recompute from cached histograms; else calibrate
    and cache (a foreign or malformed entry is overwritten)."""
    cached = cache.load(key, tensors)
    if cached is not None:
        return cached, "cache"
    if key.method != "minmax":
        histograms = cache.load_histograms(key)
        if histograms is not None:
            tensors = thresholds_from_histograms(histograms[0], key.method, key.params)
            return cache.save(key, tensors, histograms[1]), "histograms"
    if calibration is None:
        raise InputError(
            "the calibration statistics of this model are not in the cache and no calibration images were given",
            hint="pass the calibration images (or the --cache-dir the export used)",
        )
    tensors, histograms, count = collect_statistics(
        model_path, calibration, key.method, key.params, input_name=input_name, progress=progress, work_dir=work_dir
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
