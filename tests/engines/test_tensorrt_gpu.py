"""TensorRT on a real GPU: build, load, infer and agree with ONNX Runtime (skipped without one)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from engines_testlib import batch, tensorrt_and_gpu

from resnext_deploy.engines import BuildOptions
from resnext_deploy.engines.onnxruntime import OnnxRuntimeBackend
from resnext_deploy.engines.tensorrt import TensorRTBackend
from resnext_deploy.errors import InputError

# Skipped before any fixture is set up: the session's ONNX fixtures (a proxy export, its INT8 and FP16 conversions)
# are built only where TensorRT and a GPU can use them; the reason is the backend's own (the GPU check reports it).
_RUNS_HERE, _WHY_NOT = tensorrt_and_gpu()
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not _RUNS_HERE, reason=_WHY_NOT)]


def _ort(onnx_path: Path, feed: dict[str, np.ndarray]) -> np.ndarray:
    with OnnxRuntimeBackend().load(onnx_path) as runner:
        return runner.infer(feed)["logits"]


def test_build_infer_and_match_onnxruntime(onnx_copy: Path, tmp_path: Path) -> None:
    cache = tmp_path / "timing.cache"
    options = BuildOptions(min_batch=1, opt_batch=4, max_batch=8, workspace_mb=1024, timing_cache=cache)
    artifact = TensorRTBackend().build(onnx_copy, options)
    assert artifact.path.name == "model.fp32.engine" and artifact.sidecar.is_file()
    assert cache.is_file() and cache.stat().st_size > 0
    assert artifact.metadata["profile"]["input"]["max"] == [8, 3, 32, 32]
    feed = batch(4)
    with TensorRTBackend().load(artifact) as runner:
        out = runner.infer(feed)["logits"]
        assert runner.last_inference_time is not None and runner.last_inference_time > 0
        with pytest.raises(InputError, match="outside the engine's profile"):
            runner.infer(batch(9))
    np.testing.assert_allclose(out, _ort(onnx_copy, feed), rtol=1e-2, atol=1e-2)


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.reshape(len(a), -1).astype(np.float64), b.reshape(len(b), -1).astype(np.float64)
    return float(np.mean(np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))))


def test_int8_qdq_engine_runs(tiny_proxy_int8_onnx: Path, tmp_path: Path) -> None:
    artifact = TensorRTBackend().build(tiny_proxy_int8_onnx, BuildOptions(max_batch=4), output_dir=tmp_path)
    assert artifact.path.name == "model.int8.engine"
    feed = batch(2)
    with TensorRTBackend().load(artifact.path) as runner:
        out = runner.infer(feed)["logits"]
    assert out.shape == (2, 10) and np.isfinite(out).all()
    # the same Q/DQ graph (FP16 float regions) on ONNX Runtime's CPU; proxy weights: the residual branches count too
    assert _cosine(out, _ort(tiny_proxy_int8_onnx, feed)) > 0.99


def test_fp32_engine_records_tf32_and_a_damaged_timing_cache_is_rebuilt(onnx_copy: Path, tmp_path: Path) -> None:
    cache = tmp_path / "timing.cache"
    cache.write_bytes(b"not a timing cache")
    artifact = TensorRTBackend().build(onnx_copy, BuildOptions(max_batch=4, timing_cache=cache))
    assert artifact.metadata["tf32"] is True and artifact.metadata["options"]["tf32"] is True
    assert artifact.metadata["timing_cache"]["rebuilt"]  # the reason it was dropped
    assert cache.read_bytes() != b"not a timing cache" and cache.stat().st_size > 0
    again = TensorRTBackend().build(onnx_copy, BuildOptions(max_batch=4, timing_cache=cache, tf32=False))
    assert again.metadata["timing_cache"]["rebuilt"] is None and again.metadata["tf32"] is False


def test_int8_engine_runs_most_dense_convolutions_in_int8(tiny_proxy_int8_onnx: Path, tmp_path: Path) -> None:
    from resnext_deploy.engines.tensorrt.layers import inspect_engine, precision_problem, summarize

    artifact = TensorRTBackend().build(tiny_proxy_int8_onnx, BuildOptions(max_batch=4), output_dir=tmp_path)
    summary = summarize(inspect_engine(artifact.path))
    assert precision_problem(summary, "int8") is None, summary


def test_fp16_engine_runs_every_convolution_in_fp16_and_matches_fp32(tiny_proxy_onnx: Path, tiny_proxy_fp16_onnx: Path,
                                                                     tmp_path: Path) -> None:
    from resnext_deploy.engines.tensorrt.layers import inspect_engine, precision_problem, summarize

    artifact = TensorRTBackend().build(tiny_proxy_fp16_onnx, BuildOptions(precision="fp16", max_batch=4), output_dir=tmp_path)
    summary = summarize(inspect_engine(artifact.path))
    assert precision_problem(summary, "fp16") is None, summary
    feed = batch(4)
    with TensorRTBackend().load(artifact.path) as runner:
        out = runner.infer(feed)["logits"]
    assert _cosine(out, _ort(tiny_proxy_onnx, feed)) > 0.999  # the README's FP16 gate
