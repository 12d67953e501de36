"""Helpers shared by the engines tests."""

from __future__ import annotations

import importlib.util

import numpy as np

INPUT_SHAPE = (3, 32, 32)


def batch(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    """A random NCHW float32 feed for the tiny model."""
    return {"input": np.random.default_rng(seed).standard_normal((n, *INPUT_SHAPE), dtype=np.float32)}


def tensorrt_and_gpu() -> tuple[bool, str]:
    """Whether TensorRT imports and a CUDA device is present (for gpu-marked tests)."""
    from resnext_deploy.engines.cuda import has_cuda_device

    if importlib.util.find_spec("tensorrt") is None:
        return False, "tensorrt is not installed"
    if not has_cuda_device():
        return False, "no CUDA device"
    return True, ""
