"""ONNX Runtime backend (CPU default; CUDA/TensorRT providers where they really work)."""

from engines.onnxruntime.backend import OnnxRuntimeBackend

__all__ = ["OnnxRuntimeBackend"]
