"""INT8 top-1 on the tiny ResNeXt trained in-session stays within 1 point of FP32 on the val split."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from resnext_deploy.calibration.quantize import QuantizeConfig, quantize_int8
from tests.calibration.quant_support import run


@pytest.fixture(scope="module")
def trained_fp32(int8_export_dir: Path) -> Path:  # type: ignore[no-untyped-def]
    """The trained tiny model's FP32 ONNX, as the session's INT8 export wrote it (read-only)."""
    return int8_export_dir / "model.onnx"


@pytest.fixture(scope="module")
def splits(synthetic_imagenet, tiny_spec):  # type: ignore[no-untyped-def]
    """The decoded train and val splits, read once for both recipes."""
    return _split(synthetic_imagenet.root, "train", tiny_spec), _split(synthetic_imagenet.root, "val", tiny_spec)


def _split(root: Path, split: str, spec):  # type: ignore[no-untyped-def]
    from resnext_deploy.data.datasets import scan_images
    from resnext_deploy.data.preprocess import load_images

    return load_images(scan_images(root, split=split).records, spec.preprocess, progress=False)


def _top1(model: Path, images: np.ndarray, labels: np.ndarray) -> float:
    logits = np.concatenate([run(model, images[i : i + 64]) for i in range(0, len(images), 64)])
    return float(np.mean(logits.argmax(1) == labels))


@pytest.mark.slow
@pytest.mark.parametrize("recipe", ["onnxruntime", "tensorrt"])
def test_int8_top1_within_one_point(trained_fp32: Path, splits, tmp_path: Path, recipe: str) -> None:  # type: ignore[no-untyped-def]
    train, val = splits
    calib = train.array[np.random.default_rng(0).permutation(len(train.array))[:128]]
    result = quantize_int8(trained_fp32, tmp_path / "model.int8.onnx", calib, QuantizeConfig(manifest_sha256="train128", recipe=recipe, cache_dir=tmp_path / "cache", progress=False))
    fp32_top1 = _top1(trained_fp32, val.array, val.labels)
    int8_top1 = _top1(result.path, val.array, val.labels)
    assert fp32_top1 > 0.5, "the tiny model did not learn the synthetic task"
    assert abs(int8_top1 - fp32_top1) <= 0.01 + 1e-9, (fp32_top1, int8_top1)
