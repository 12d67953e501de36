"""The export flow: zoo spec -> FP32 ONNX -> precision artifact -> engine -> verification.

``options`` holds what an export takes (typed, validated where declared), ``preflight`` every
model-free check and the resolved plan, ``flow`` the stages in order, ``mixed_precision`` the
accuracy-driven fallback stage.
"""

from resnext_deploy.export.flow import run_export
from resnext_deploy.export.options import CalibrationOptions, ExportOptions, Fp32Options

__all__ = ["CalibrationOptions", "ExportOptions", "Fp32Options", "run_export"]
