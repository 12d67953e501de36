"""Tiny ResNeXt ONNX models (FP32 and Q/DQ INT8) built once per test session."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from engines_testlib import INPUT_SHAPE


def _export_tiny_resnext(path: Path) -> None:
    import timm
    import torch

    torch.manual_seed(0)
    model = timm.create_model(
        "resnext50_32x4d",
        pretrained=False,
        num_classes=10,
        layers=(1, 1, 1, 1),
        cardinality=8,
        base_width=4,
        channels=(32, 64, 128, 256),
        stem_width=32,
    ).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            model,
            (torch.randn(1, *INPUT_SHAPE),),
            str(path),
            input_names=["input"],
            output_names=["logits"],
            dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
            opset_version=17,
            dynamo=False,
        )


@pytest.fixture(scope="session")
def tiny_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """FP32 tiny ResNeXt with dynamic batch, input ``input`` and output ``logits``."""
    path = tmp_path_factory.mktemp("tiny") / "model.onnx"
    _export_tiny_resnext(path)
    return path


@pytest.fixture(scope="session")
def tiny_int8_onnx(tiny_onnx: Path) -> Path:
    """The tiny model quantized to Q/DQ INT8 on random calibration data."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            rng = np.random.default_rng(0)
            self._batches = iter([{"input": rng.standard_normal((1, *INPUT_SHAPE), dtype=np.float32)} for _ in range(4)])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._batches, None)

    path = tiny_onnx.with_name("model.int8.onnx")
    quantize_static(
        str(tiny_onnx),
        str(path),
        Reader(),
        quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QInt8,
        weight_type=QuantType.QInt8,
    )
    return path


@pytest.fixture
def onnx_copy(tiny_onnx: Path, tmp_path: Path) -> Path:
    """A private copy of the FP32 tiny model that a test may build next to or damage."""
    path = tmp_path / "model.onnx"
    path.write_bytes(tiny_onnx.read_bytes())
    return path
