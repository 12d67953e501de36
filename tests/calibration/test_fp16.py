"""FP16 conversion: float32 I/O kept, runs on ORT's CPU provider, logits match FP32, metadata recorded."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from resnext_deploy.calibration.fp16 import convert_fp16
from resnext_deploy.errors import InputError, UsageError
from resnext_deploy.metadata import read_metadata
from tests.calibration.quant_support import export_random_tiny, min_cosine, run, smooth_images


@pytest.fixture(scope="module")
def tiny_fp32(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_random_tiny(tmp_path_factory.mktemp("tiny16") / "model.onnx")


def test_fp16_runs_on_cpu_and_matches_fp32(tiny_fp32: Path) -> None:
    result = convert_fp16(tiny_fp32, tiny_fp32.with_name("model.fp16.onnx"))
    model = onnx.load(str(result.path))
    for value in list(model.graph.input) + list(model.graph.output):
        assert value.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    weights = [i for i in model.graph.initializer if len(i.dims) == 4]
    assert weights and all(w.data_type == onnx.TensorProto.FLOAT16 for w in weights)
    assert result.float16_initializers >= len(weights)
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
