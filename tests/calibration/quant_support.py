"""Helpers shared by the quantization and FP16 tests: a random-weight tiny ResNeXt export and ORT runs."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from resnext_deploy.exporters.parity import ort_session
from resnext_deploy.numerics import row_cosines

SIZE = 64


def smooth_images(count: int, seed: int) -> np.ndarray:
    """Spatially smooth random images (NCHW float32), closer to real activations than white noise."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    coarse = torch.randn(count, 3, SIZE // 8, SIZE // 8, generator=generator)
    fine = 0.3 * torch.randn(count, 3, SIZE, SIZE, generator=generator)
    up = torch.nn.functional.interpolate(coarse, size=(SIZE, SIZE), mode="bilinear", align_corners=False)
    return (up + fine).numpy().astype(np.float32)


def export_random_tiny(path: Path, exporter: str = "dynamo") -> Path:
    """The tiny ResNeXt with random weights and BN statistics estimated on smooth images, exported FP32."""
    import torch

    from resnext_deploy.exporters.export import export_fp32
    from tests.support.batchnorm import reestimate_batchnorm
    from tests.support.tiny import TINY_SPEC, build_tiny

    torch.manual_seed(0)
    model = build_tiny()
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            torch.nn.init.uniform_(module.weight, 0.5, 1.5)
            torch.nn.init.normal_(module.bias, 0.0, 0.1)
    reestimate_batchnorm(model, smooth_images(64, seed=1))
    metadata = {"model_name": TINY_SPEC.name, "num_classes": 10, "preprocess": TINY_SPEC.preprocess.to_dict()}
    export_fp32(model, path, input_size=SIZE, metadata=metadata, exporter=exporter, parity_batch_sizes=(2,))
    return path


def run(model: Path, images: np.ndarray) -> np.ndarray:
    """Logits of an ONNX model on ORT's CPU provider."""
    return ort_session(model).run(None, {"input": images})[0]


def min_cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Smallest per-sample cosine similarity between two logit matrices."""
    return float(np.min(row_cosines(a, b)))
