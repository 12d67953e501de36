"""TensorRT backend (GPU): engines built through Polygraphy's loaders from strongly typed ONNX."""

from resnext_deploy.engines.tensorrt.backend import TensorRTBackend

__all__ = ["TensorRTBackend"]
