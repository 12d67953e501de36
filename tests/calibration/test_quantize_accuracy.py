"""INT8 top-1 on the tiny ResNeXt trained in-session stays within 1 point of FP32 on the val split."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from resnext_deploy.calibration.quantize import QuantizeConfig, quantize_int8
from tests.calibration.quant_support import run


@pytest.fixture(scope="module")
def trained_fp32(tmp_path_factory: pytest.TempPathFactory, tiny_checkpoint, tiny_spec) -> Path:  # type: ignore[no-untyped-def]
    import torch

    from resnext_deploy.exporters.export import export_fp32
    from tests.support.tiny import build_tiny

    model = build_tiny(tiny_spec)
    model.load_state_dict(torch.load(tiny_checkpoint.checkpoint, map_location="cpu"))
    model.eval()
    path = tmp_path_factory.mktemp("trained") / "model.onnx"
    metadata = {"model_name": tiny_spec.name, "num_classes": tiny_spec.num_classes}
    export_fp32(model, path, input_size=tiny_spec.preprocess.input_size, metadata=metadata, parity_batch_sizes=(2,))
    return path


def _split(root: Path, split: str, spec):  # type: ignore[no-untyped-def]
    from resnext_deploy.data.datasets import scan_images
    from resnext_deploy.data.preprocess import load_images

    return load_images(scan_images(root, split=split).records, spec.preprocess, progress=False)


def _top1(model: Path, images: np.ndarray, labels: np.ndarray) -> float:
    logits = np.concatenate([run(model, images[i : i + 64]) for i in range(0, len(images), 64)])
    return float(np.mean(logits.argmax(1) == labels))


@pytest.mark.slow
@pytest.mark.parametrize("recipe", ["onnxruntime", "tensorrt"])
def test_int8_top1_within_one_point(trained_fp32: Path, synthetic_imagenet, tiny_spec, tmp_path: Path,  # type: ignore[no-untyped-def]
                                    recipe: str) -> None:
    train = _split(synthetic_imagenet.root, "train", tiny_spec)
    val = _split(synthetic_imagenet.root, "val", tiny_spec)
    calib = train.array[np.random.default_rng(0).permutation(len(train.array))[:128]]
    result = quantize_int8(trained_fp32, tmp_path / "model.int8.onnx", calib, QuantizeConfig(manifest_sha256="train128", recipe=recipe, cache_dir=tmp_path / "cache", progress=False))
    fp32_top1 = _top1(trained_fp32, val.array, val.labels)
    int8_top1 = _top1(result.path, val.array, val.labels)
    assert fp32_top1 > 0.5, "the tiny model did not learn the synthetic task"
    assert abs(int8_top1 - fp32_top1) <= 0.01 + 1e-9, (fp32_top1, int8_top1)
