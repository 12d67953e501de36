"""Numerical parity between a PyTorch model and its ONNX export, measured with ONNX Runtime."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from resnext_deploy.numerics import mean_cosine

if TYPE_CHECKING:
    import torch

# FP32 re-association across ~50 fused layers moves logits by ~1e-6 relative; 1e-3 of the
# largest logit plus 1e-4 absolute leaves two orders of margin and still catches real bugs
# (a wrong fold, a missing layer or a bad simplification moves logits by >1%).
DEFAULT_ATOL = 1e-4
DEFAULT_RTOL = 1e-3
DEFAULT_MIN_COSINE = 0.99999


@dataclass
class ParityResult:
    """Worst-case agreement over all compared inputs; truthy when within tolerance."""

    max_abs_diff: float
    min_cosine: float
    bound: float
    batch_sizes: list[int]
    samples: int
    ok: bool
    details: list[dict[str, float]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return self.ok

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def ort_session(model: bytes | str | os.PathLike[str], *, threads: int | None = None, options: Any = None) -> Any:
    """A plain CPU ONNX Runtime session for numeric checks (the GPU wheel would otherwise try CUDA first).

    ``options`` default to ORT's own with warnings silenced; ``threads`` sets the intra-op pool.
    """
    import onnxruntime as ort

    if options is None:
        options = ort.SessionOptions()
        options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = threads
    source = model if isinstance(model, bytes) else os.fspath(model)
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def random_inputs(batch: int, input_size: int, seed: int) -> np.ndarray:
    """Normalised-image-like inputs: standard normal, NCHW float32."""
    return np.random.default_rng(seed).standard_normal((batch, 3, input_size, input_size)).astype(np.float32)


def compare(reference: np.ndarray, candidate: np.ndarray, atol: float, rtol: float) -> tuple[float, float, float]:
    """(max abs diff, cosine, allowed bound) of candidate against reference."""
    diff = float(np.max(np.abs(reference.astype(np.float64) - candidate)))
    bound = atol + rtol * float(np.max(np.abs(reference)))
    return diff, mean_cosine(reference, candidate), bound


def check_parity(
    model: torch.nn.Module,
    onnx_model: bytes | str,
    input_size: int,
    batch_sizes: tuple[int, ...] = (1, 8),
    samples: int = 2,
    seed: int = 0,
    atol: float = DEFAULT_ATOL,
    rtol: float = DEFAULT_RTOL,
    min_cosine: float = DEFAULT_MIN_COSINE,
) -> ParityResult:
    """Run ``samples`` random inputs at each batch size through PyTorch and ONNX Runtime."""
    import torch

    session = ort_session(onnx_model)
    input_name = session.get_inputs()[0].name
    details: list[dict[str, float]] = []
    for batch in batch_sizes:
        for sample in range(samples):
            x = random_inputs(batch, input_size, seed + 1000 * batch + sample)
            with torch.no_grad():
                expected = model(torch.from_numpy(x)).numpy()
            (got,) = session.run(None, {input_name: x})
            diff, cos, bound = compare(expected, got, atol, rtol)
            details.append({"batch": batch, "max_abs_diff": diff, "cosine": cos, "bound": bound})
    worst_diff = max(d["max_abs_diff"] for d in details)
    worst_cos = min(d["cosine"] for d in details)
    ok = all(d["max_abs_diff"] <= d["bound"] for d in details) and worst_cos >= min_cosine
    return ParityResult(
        max_abs_diff=worst_diff,
        min_cosine=worst_cos,
        bound=min(d["bound"] for d in details),
        batch_sizes=list(batch_sizes),
        samples=samples,
        ok=ok,
        details=details,
    )
