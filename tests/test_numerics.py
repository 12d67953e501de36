"""One logits-cosine convention for export parity, verification and benches, edge cases included."""

from __future__ import annotations

import numpy as np
import pytest

from resnext_deploy.exporters.parity import compare
from resnext_deploy.numerics import mean_cosine, row_cosines
from resnext_deploy.verification.accuracy import compare_logits


def test_rows_are_compared_one_by_one_in_float64() -> None:
    a = np.array([[1.0, 2.0, 3.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], dtype=np.float32)
    b = np.array([[2.0, 4.0, 6.0], [-3.0, 0.0, 0.0], [1.0, 0.0, 0.0]], dtype=np.float32)
    assert row_cosines(a, b) == pytest.approx([1.0, -1.0, 0.0], abs=1e-12)
    assert mean_cosine(a, b) == pytest.approx(0.0, abs=1e-12)
    # NCHW-like rows are flattened; identical rows give 1 within float64 rounding, never above it
    big = np.random.default_rng(0).standard_normal((64, 2, 4, 4)).astype(np.float32) * 1e18
    same = row_cosines(big, big)
    assert same.shape == (64,) and np.all(same <= 1.0) and same == pytest.approx(1.0, abs=1e-15)


def test_zero_norm_rows_follow_one_convention() -> None:
    zero, live = np.zeros((1, 4), np.float32), np.ones((1, 4), np.float32)
    assert row_cosines(zero, zero).tolist() == [1.0]  # identical outputs
    assert row_cosines(zero, live).tolist() == [0.0]  # a dead output shares no direction with a live one
    assert row_cosines(live, zero).tolist() == [0.0]
    assert np.isnan(row_cosines(np.array([[np.nan, 1.0]]), np.array([[1.0, 1.0]]))[0])


def test_verification_and_parity_use_the_same_convention() -> None:
    reference = np.array([[1.0, 2.0], [0.0, 0.0]], dtype=np.float32)
    dead = np.zeros_like(reference)
    metrics = compare_logits(reference, dead, None)
    assert metrics["min_cosine"] == 0.0 and metrics["mean_cosine"] == pytest.approx(0.5)  # row 2: zero vs zero
    assert compare(reference, dead, 1e-4, 1e-3)[1] == metrics["mean_cosine"]
