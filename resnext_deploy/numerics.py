"""Numeric comparisons of model outputs shared by the export parity check, verification and benches."""

from __future__ import annotations

import numpy as np


def row_cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity of each row of two (N, ...) arrays, in float64.

    Zero norms: two all-zero rows are identical (1.0); an all-zero row against a non-zero one
    shares no direction with it (0.0), so a dead output fails a cosine gate instead of passing
    it. NaN or inf in a row gives NaN, which fails every threshold.
    """
    a64 = np.asarray(a, dtype=np.float64).reshape(len(a), -1)
    b64 = np.asarray(b, dtype=np.float64).reshape(len(b), -1)
    norm_a, norm_b = np.linalg.norm(a64, axis=1), np.linalg.norm(b64, axis=1)
    zero_a, zero_b = norm_a == 0, norm_b == 0
    with np.errstate(invalid="ignore"):
        cos = (a64 * b64).sum(axis=1) / np.where(zero_a | zero_b, 1.0, norm_a * norm_b)
    cos = np.where(zero_a | zero_b, np.where(zero_a & zero_b, 1.0, 0.0), cos)
    return np.clip(cos, -1.0, 1.0)  # rounding can leave |cos| a few ulp above 1; NaN stays NaN


def mean_cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Mean of :func:`row_cosines`: the logits cosine the reports and benches quote."""
    return float(np.mean(row_cosines(a, b)))
