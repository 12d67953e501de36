"""Verification within an engine's batch range: evaluation batches capped, latency only inside the profile."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from resnext_deploy.engines.base import Runner, TensorSpec
from resnext_deploy.engines.tensorrt.runner import LATENCY_SCOPE, TensorRTRunner
from resnext_deploy.errors import InputError
from resnext_deploy.verification.accuracy import eval_batch_size, run_logits
from resnext_deploy.verification.latency import LatencyPlan, measure_latency


class RangeRunner(Runner):
    """A numpy backend with a batch range like a TensorRT profile: logits are per-channel means; batches seen are kept."""

    backend = "ranged"

    def __init__(self, low: int = 1, high: int | None = None) -> None:
        super().__init__({"input": TensorSpec((-1, 3, 4, 4), np.dtype(np.float32))}, ["logits"])
        self.low, self.high, self.batches = low, high, []

    @property
    def batch_range(self) -> tuple[int, int | None]:
        return self.low, self.high

    def check_batch(self, feed: dict[str, np.ndarray]) -> None:
        n = feed["input"].shape[0]
        if n < self.low or (self.high is not None and n > self.high):
            raise InputError(f"batch {n} is outside {self.low}..{self.high}")

    def _run(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.batches.append(feed["input"].shape[0])
        return {"logits": feed["input"].mean(axis=(2, 3))}


def _sidecar_runner(max_batch: int) -> TensorRTRunner:
    """The real TensorRT runner of an engine exported with --max-batch (built from its sidecar; never activated)."""
    sidecar = {
        "inputs": [{"name": "input", "shape": [-1, 3, 4, 4], "dtype": "float32"}],
        "outputs": [{"name": "logits", "shape": [-1, 3], "dtype": "float32"}],
        "profile": {"input": {"min": [1, 3, 4, 4], "opt": [4, 3, 4, 4], "max": [max_batch, 3, 4, 4]}},
    }
    return TensorRTRunner(Path("model.int8.engine"), b"", sidecar)


def test_evaluation_batch_is_capped_at_the_engine_profile() -> None:
    engine = _sidecar_runner(8)
    assert engine.batch_range == (1, 8)
    assert eval_batch_size(32, RangeRunner(), engine) == 8
    assert eval_batch_size(4, RangeRunner(), engine) == 4
    assert eval_batch_size(32, RangeRunner(), RangeRunner()) == 32


def test_logits_run_in_batches_the_runner_accepts() -> None:
    images = np.random.default_rng(0).standard_normal((21, 3, 4, 4), dtype=np.float32)
    expected = images.mean(axis=(2, 3))
    capped = RangeRunner(high=8)
    with capped:
        np.testing.assert_array_equal(run_logits(capped, images, 32), expected)
    assert capped.batches == [8, 8, 5]
    padded = RangeRunner(low=4, high=8)  # a profile with min 4: the last image alone is padded, its copies dropped
    with padded:
        np.testing.assert_array_equal(run_logits(padded, images[:9], 8), expected[:9])
    assert padded.batches == [8, 4]


def test_latency_times_only_batch_sizes_inside_the_profile() -> None:
    baseline, target = RangeRunner(), RangeRunner(high=8)
    target.backend = "tensorrt"
    with baseline, target:
        latency = measure_latency(baseline, target, LatencyPlan((1, 8, 32), duration=0.0, iterations=2, warmup_s=0.0),
                                  progress=False)
    assert set(latency["per_batch"]) == {"1", "8", "32"}
    assert latency["skipped_batch_sizes"] == {"32": "batch 32 is outside the tensorrt engine's batch range 1..8"}
    assert latency["per_batch"]["32"] == {"skipped": latency["skipped_batch_sizes"]["32"]}
    assert latency["per_batch"]["8"]["target"]["iterations"] == 2
    assert 32 not in baseline.batches and 32 not in target.batches  # neither side ran the skipped size
    assert latency["scope"]["target"] == Runner.latency_scope


def test_tensorrt_latency_says_what_it_includes() -> None:
    assert _sidecar_runner(8).latency_scope == LATENCY_SCOPE
    assert LATENCY_SCOPE.startswith("end-to-end, host buffers") and "trtexec" in LATENCY_SCOPE
