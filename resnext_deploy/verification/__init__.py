"""Verify an export directory: accuracy and latency of the target vs the FP32 baseline, gated for CI.

Importing this package loads no heavy library; torch, onnxruntime and matplotlib are imported
inside the functions that need them.
"""

from resnext_deploy.verification.gates import GateResult, Gates, load_gates
from resnext_deploy.verification.options import VerifyOptions, parse_batch_sizes
from resnext_deploy.verification.run import VerifyOutcome, verify_directory

__all__ = [
    "GateResult",
    "Gates",
    "VerifyOptions",
    "VerifyOutcome",
    "load_gates",
    "parse_batch_sizes",
    "verify_directory",
]
