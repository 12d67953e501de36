"""FP16 conversion: float32 I/O kept, runs on ORT's CPU provider, logits match FP32, metadata recorded."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from resnext_deploy.calibration.fp16 import convert_fp16
from resnext_deploy.errors import InputError, UsageError
from resnext_deploy.metadata import read_metadata
from tests.calibration.quant_support import min_cosine, run, smooth_images


@pytest.fixture(scope="module")
def tiny_fp32(tmp_path_factory: pytest.TempPathFactory, copy_random_tiny) -> Path:  # type: ignore[no-untyped-def]
    return copy_random_tiny(tmp_path_factory.mktemp("tiny16"))


def test_fp16_runs_on_cpu_and_matches_fp32(tiny_fp32: Path) -> None:
    result = convert_fp16(tiny_fp32, tiny_fp32.with_name("model.fp16.onnx"))
    model = onnx.load(str(result.path))
    for value in list(model.graph.input) + list(model.graph.output):
        assert value.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    weights = [i for i in model.graph.initializer if len(i.dims) == 4]
    assert weights and all(w.data_type == onnx.TensorProto.FLOAT16 for w in weights)
    assert result.float16_initializers >= len(weights)
    from resnext_deploy.onnx_io import graph_precision

    assert graph_precision(model) == "fp16" and graph_precision(onnx.load(str(tiny_fp32))) == "fp32"
    images = smooth_images(8, seed=5)
    reference, half = run(tiny_fp32, images), run(result.path, images)
    assert half.dtype == np.float32 and half.shape == reference.shape
    assert min_cosine(reference, half) >= 0.9999
    meta, fp32_meta = read_metadata(result.path), read_metadata(tiny_fp32)
    assert meta["precision"] == "fp16"
    assert {k: meta[k] for k in fp32_meta} == fp32_meta
    assert result.to_dict()["path"] == str(result.path)


def test_fp16_bad_inputs(tiny_fp32: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not found"):
        convert_fp16(tmp_path / "missing.onnx", tmp_path / "x.onnx")
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x00garbage")
    with pytest.raises(InputError, match="cannot read"):
        convert_fp16(garbage, tmp_path / "x.onnx")
    with pytest.raises(UsageError):
        convert_fp16(tiny_fp32, tiny_fp32)
    assert not (tmp_path / "x.onnx").exists()


@pytest.fixture(scope="module")
def trt_pair(tiny_fp32: Path) -> tuple[Path, Path]:
    """The TensorRT-recipe INT8 artifact (grouped convs kept float) with FP16 float regions, and the same with FP32 ones."""
    import dataclasses

    from resnext_deploy.calibration.quantize import QuantizeConfig, quantize_int8
    from resnext_deploy.calibration.recipes import tensorrt_recipe

    calib, cache = smooth_images(32, seed=2), tiny_fp32.parent / "cache"
    recipe = tensorrt_recipe(keep_grouped_float=True)
    half = quantize_int8(tiny_fp32, tiny_fp32.with_name("model.int8.tensorrt.onnx"), calib, QuantizeConfig(manifest_sha256="m", method="minmax", recipe=recipe, cache_dir=cache, progress=False))
    full = quantize_int8(tiny_fp32, tiny_fp32.with_name("fp32-regions.int8.onnx"), calib, QuantizeConfig(manifest_sha256="m", method="minmax", recipe=dataclasses.replace(recipe, float_regions="fp32"), cache_dir=cache, progress=False))
    assert half.float_regions == "fp16" and full.float_regions == "fp32" and half.excluded_nodes
    return half.path, full.path


def test_tensorrt_int8_float_regions_are_fp16_with_fp32_io(trt_pair: tuple[Path, Path]) -> None:
    from onnx import TensorProto, numpy_helper

    from resnext_deploy.calibration.recipes import grouped_conv_nodes

    model = onnx.load(str(trt_pair[0]))
    assert next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 19
    for value in list(model.graph.input) + list(model.graph.output):
        assert value.type.tensor_type.elem_type == TensorProto.FLOAT
    init = {i.name: i for i in model.graph.initializer}
    assert not [name for name, i in init.items() if i.data_type in (TensorProto.FLOAT, TensorProto.DOUBLE)]
    qdq = [n for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    assert qdq
    for node in qdq:
        assert init[node.input[1]].data_type == TensorProto.FLOAT16, node.name  # scale: DQ yields FP16
        assert init[node.input[2]].data_type == TensorProto.INT8 and not numpy_helper.to_array(init[node.input[2]]).any()
    grouped = grouped_conv_nodes(model)
    assert grouped
    for conv in (n for n in model.graph.node if n.name in grouped):
        assert init[conv.input[1]].data_type == TensorProto.FLOAT16  # kept out of INT8: FP16, not FP32
    casts = [n for n in model.graph.node if n.op_type == "Cast"]
    assert len(casts) == 2  # graph input and output only: nothing in between runs FP32
    assert read_metadata(trt_pair[0])["calibration"]["float_regions"] == "fp16"


def test_tensorrt_int8_with_fp16_regions_runs_on_ort_cpu(tiny_fp32: Path, trt_pair: tuple[Path, Path]) -> None:
    images = smooth_images(16, seed=5)
    reference, half, full = run(tiny_fp32, images), run(trt_pair[0], images), run(trt_pair[1], images)
    assert half.dtype == np.float32 and half.shape == reference.shape
    mean_cosine = lambda a, b: float(np.mean([min_cosine(x[None], y[None]) for x, y in zip(a, b)]))  # noqa: E731
    # INT8 itself costs ~0.005 of mean cosine on this random-weight model (measured 0.9951); FP16 regions may add
    # rounding that flips single INT8 levels downstream, but must cost far less than INT8 does (measured 0.0001)
    assert mean_cosine(reference, half) >= mean_cosine(reference, full) - 0.002
    assert mean_cosine(half, full) > 0.99
