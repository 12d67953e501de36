"""The FP32 baseline logits are computed once per (FP32 ONNX, image subset, preprocessing) and reused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from resnext_deploy.calibration.baseline_cache import BaselineCache, BaselineKey, BaselineLogits, compute_logits
from resnext_deploy.data.preprocess import load_images
from resnext_deploy.verification import verify_directory
from resnext_deploy.verification.accuracy import eval_images_sha256, load_eval_set
from resnext_deploy.verification.options import VerifyOptions
from resnext_deploy.zoo import PreprocessConfig


def _verify(directory: Path, eval_data: Path, cache: Path, size: int = 24):  # type: ignore[no-untyped-def]
    options = VerifyOptions(eval_data=eval_data, eval_size=size, latency=False, plot=False, progress=False,
                            cache_dir=cache, eval_batch_size=5)
    return verify_directory(directory, options).report


def test_second_verify_hits_and_a_changed_subset_or_model_misses(random_export_dir: Path, synthetic_imagenet,
                                                                tmp_path: Path) -> None:
    export_dir = random_export_dir  # what is cached does not depend on the weights
    cache = tmp_path / "cache"
    first = _verify(export_dir, synthetic_imagenet.val, cache)
    second = _verify(export_dir, synthetic_imagenet.val, cache)
    record = second.verification.baseline["logits"]
    assert first.verification.baseline["logits"]["cache_hit"] is False and record["cache_hit"] is True
    assert record["computed_by"]["provider"] == "CPUExecutionProvider"
    assert second.verification.accuracy == first.verification.accuracy  # the same numbers from the cached reference
    assert json.loads((export_dir / "report.json").read_text())["verification"]["baseline"]["logits"]["cache_hit"]

    other_images = _verify(export_dir, synthetic_imagenet.val, cache, size=20)  # another subset
    assert other_images.verification.baseline["logits"]["cache_hit"] is False

    changed = Path(shutil.copytree(synthetic_imagenet.val, tmp_path / "val"))
    for picture in changed.rglob("*.JPEG"):  # the same decoded pixels, other bytes: another subset all the same
        picture.write_bytes(picture.read_bytes() + b"\0")
    assert _verify(export_dir, changed, cache).verification.baseline["logits"]["cache_hit"] is False

    import onnx

    fp32 = export_dir / "model.onnx"
    model = onnx.load(fp32)
    model.doc_string = "re-exported"
    onnx.save(model, fp32)
    report = json.loads((export_dir / "report.json").read_text())
    report.pop("checksums", None)  # the edited FP32 file is the point here, not the checksum gate
    (export_dir / "report.json").write_text(json.dumps(report))
    assert _verify(export_dir, synthetic_imagenet.val, cache).verification.baseline["logits"]["cache_hit"] is False


def test_cached_logits_equal_a_fresh_computation_bitwise(random_int8_export_dir: Path, synthetic_imagenet,
                                                        tmp_path: Path) -> None:
    int8_export_dir = random_int8_export_dir
    fp32 = int8_export_dir / "model.onnx"
    cfg = PreprocessConfig.from_dict(json.loads((int8_export_dir / "report.json").read_text())["model"]["preprocess"])
    eval_set = load_eval_set(synthetic_imagenet.val, None, 37, 0, cfg, None, 32)
    images = load_images(eval_set.records, cfg, progress=False).array
    key = BaselineKey.for_model(fp32, eval_images_sha256(eval_set), len(images), cfg.to_dict())
    streamed = BaselineLogits(fp32, key, tmp_path)
    for start in range(0, len(images), 7):  # batches that do not line up with the computation's chunks
        streamed.add(images[start : start + 7])
    computed = streamed.result()
    again = BaselineLogits(fp32, key, tmp_path)
    assert again.hit
    fresh = compute_logits(fp32, images)
    assert computed.dtype == np.float32 and computed.shape == (37, fresh.shape[1])
    assert np.array_equal(again.result(), fresh) and np.array_equal(computed, fresh)


def test_a_damaged_or_foreign_entry_is_a_miss_and_is_rewritten(random_int8_export_dir: Path, tmp_path: Path) -> None:
    int8_export_dir = random_int8_export_dir
    fp32 = int8_export_dir / "model.onnx"
    key = BaselineKey.for_model(fp32, "0" * 64, 3, {"input_size": 64})
    cache = BaselineCache(tmp_path)
    logits = np.arange(30, dtype=np.float32).reshape(3, 10)
    path = cache.save(key, logits)
    assert path is not None and np.array_equal(cache.load(key), logits)
    path.write_bytes(b"not an npz")
    assert cache.load(key) is None
    other = BaselineKey.for_model(fp32, "1" * 64, 3, {"input_size": 64})
    shutil.copyfile(cache.save(other, logits), path)  # another key's entry under this key's name
    assert cache.load(key) is None
    cache.save(key, logits.astype(np.float64)[:2].astype(np.float32))  # wrong image count for the key
    assert cache.load(key) is None
    cache.save(key, logits)
    assert np.array_equal(cache.load(key), logits)
