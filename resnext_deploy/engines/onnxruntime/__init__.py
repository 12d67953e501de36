"""ONNX Runtime backend (CPU default; CUDA/TensorRT providers where they really work)."""

from resnext_deploy.engines.onnxruntime.backend import OnnxRuntimeBackend

__all__ = ["OnnxRuntimeBackend"]
