"""Tiny ResNeXt ONNX models (FP32 and Q/DQ INT8) built once per test session."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from engines_testlib import INPUT_SHAPE


@pytest.fixture(scope="session")
def tiny_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """FP32 tiny ResNeXt (random weights, 32x32) exported by the product, input ``input`` and output ``logits``."""
    import torch

    from resnext_deploy.exporters.export import export_fp32
    from tests.support.tiny import build_tiny

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tiny") / "model.onnx"
    metadata = {"model_name": "resnext_tiny", "num_classes": 10, "preprocess": {"input_size": INPUT_SHAPE[-1]}}
    export_fp32(build_tiny().eval(), path, input_size=INPUT_SHAPE[-1], metadata=metadata, parity_batch_sizes=(2,))
    return path


@pytest.fixture(scope="session")
def tiny_int8_onnx(tiny_onnx: Path) -> Path:
    """The tiny model quantized to Q/DQ INT8 by the product (TensorRT recipe: symmetric int8) on random data."""
    from resnext_deploy.calibration.quantize import QuantizeConfig, quantize_int8

    calibration = np.random.default_rng(0).standard_normal((4, *INPUT_SHAPE), dtype=np.float32)
    path = tiny_onnx.with_name("model.int8.onnx")
    quantize_int8(tiny_onnx, path, calibration, QuantizeConfig(manifest_sha256="engines-tests", method="minmax", recipe="tensorrt", cache_dir=tiny_onnx.parent / "cache", progress=False))
    return path


@pytest.fixture(scope="session")
def tiny_cpu_int8_onnx(tiny_onnx: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model quantized with the ``onnxruntime`` (CPU) recipe: unsigned activations with zero points and
    INT32 bias, the Q/DQ TensorRT's parser refuses."""
    from resnext_deploy.calibration.quantize import QuantizeConfig, quantize_int8

    folder = tmp_path_factory.mktemp("tiny-cpu")
    calibration = np.random.default_rng(0).standard_normal((4, *INPUT_SHAPE), dtype=np.float32)
    result = quantize_int8(tiny_onnx, folder / "model.int8.onnx", calibration, QuantizeConfig(manifest_sha256="engines-tests-cpu", method="minmax", recipe="onnxruntime", cache_dir=folder / "cache", progress=False))
    return result.path


@pytest.fixture
def onnx_copy(tiny_onnx: Path, tmp_path: Path) -> Path:
    """A private copy of the FP32 tiny model that a test may build next to or damage."""
    path = tmp_path / "model.onnx"
    path.write_bytes(tiny_onnx.read_bytes())
    return path


def _proxy_images(count: int, seed: int) -> np.ndarray:
    from bench.proxy_model import natural_images

    return natural_images(count, INPUT_SHAPE[-1], seed=seed)


@pytest.fixture(scope="session")
def tiny_proxy_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """FP32 tiny ResNeXt with the benchmark proxy's weights: unlike timm's zero-initialised last BatchNorm of each
    block, every residual branch carries signal, so a precision error inside a branch shows in the logits."""
    from bench.proxy_model import build_proxy
    from resnext_deploy.exporters.export import export_fp32
    from tests.support.tiny import TINY_SPEC

    model = build_proxy(_proxy_images(32, seed=0), model_name=TINY_SPEC.timm_name, num_classes=TINY_SPEC.num_classes,
                        **TINY_SPEC.timm_kwargs)
    path = tmp_path_factory.mktemp("tiny-proxy") / "model.onnx"
    metadata = {"model_name": "resnext_tiny", "num_classes": 10, "preprocess": {"input_size": INPUT_SHAPE[-1]}}
    export_fp32(model, path, input_size=INPUT_SHAPE[-1], metadata=metadata, parity_batch_sizes=(2,))
    return path


@pytest.fixture(scope="session")
def tiny_proxy_fp16_onnx(tiny_proxy_onnx: Path) -> Path:
    """The proxy model converted to FP16 by the product (I/O stays FP32)."""
    from resnext_deploy.calibration.fp16 import convert_fp16

    return convert_fp16(tiny_proxy_onnx, tiny_proxy_onnx.with_name("model.fp16.onnx")).path


@pytest.fixture(scope="session")
def tiny_proxy_int8_onnx(tiny_proxy_onnx: Path) -> Path:
    """The proxy model quantized by the product with the TensorRT recipe, calibrated on natural-statistics images."""
    from resnext_deploy.calibration.quantize import QuantizeConfig, quantize_int8

    path = tiny_proxy_onnx.with_name("model.int8.onnx")
    quantize_int8(tiny_proxy_onnx, path, _proxy_images(16, seed=1),
                  QuantizeConfig(manifest_sha256="engines-tests-proxy", method="minmax", recipe="tensorrt",
                                 cache_dir=tiny_proxy_onnx.parent / "cache", progress=False))
    return path
