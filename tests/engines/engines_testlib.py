"""Helpers shared by the engines tests."""

from __future__ import annotations

import numpy as np

INPUT_SHAPE = (3, 32, 32)


def batch(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    """A random NCHW float32 feed for the tiny model."""
    return {"input": np.random.default_rng(seed).standard_normal((n, *INPUT_SHAPE), dtype=np.float32)}


def tensorrt_and_gpu() -> tuple[bool, str]:
    """Whether TensorRT runs here (for gpu-marked tests): the backend's own availability check."""
    from resnext_deploy.engines.tensorrt import TensorRTBackend

    return TensorRTBackend().available()
