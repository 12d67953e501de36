"""Pure-inference latency (the runner's own ``last_inference_time``) per batch size, on random inputs."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from resnext_deploy.engines.base import Runner
from resnext_deploy.errors import InputError

RANDOM_NOTE = "latency measured on random inputs (data loading and preprocessing excluded): pure inference time"


@dataclass
class LatencyPlan:
    """How long to measure each (runner, batch size) pair."""

    batch_sizes: tuple[int, ...]
    warmup: int
    iterations: int
    duration: float | None
    seed: int = 0


def summarize(times_s: list[float], batch: int) -> dict[str, Any]:
    """p50/p90/p99/mean in ms and throughput in images/s."""
    ms = np.asarray(times_s) * 1000.0
    p50 = float(np.percentile(ms, 50))
    return {
        "iterations": len(ms), "p50_ms": p50, "p90_ms": float(np.percentile(ms, 90)),
        "p99_ms": float(np.percentile(ms, 99)), "mean_ms": float(ms.mean()), "min_ms": float(ms.min()),
        "images_per_s": float(batch * 1000.0 / p50) if p50 > 0 else None,
    }


def _measure(runner: Runner, feed: dict[str, np.ndarray], plan: LatencyPlan, advance: Any) -> list[float]:
    for _ in range(plan.warmup):
        runner.infer(feed)
    times: list[float] = []
    if plan.duration is not None:
        end = time.perf_counter() + plan.duration
        while time.perf_counter() < end or not times:
            runner.infer(feed)
            times.append(float(runner.last_inference_time or 0.0))
        advance(plan.iterations or 1)
        return times
    for _ in range(plan.iterations):
        runner.infer(feed)
        times.append(float(runner.last_inference_time or 0.0))
        advance(1)
    return times


def random_feed(runner: Runner, batch: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """A random float input of ``batch`` images in the runner's own input dtype."""
    name, spec = next(iter(runner.input_specs.items()))
    shape = (batch, *(dim for dim in spec.shape[1:]))
    return {name: rng.standard_normal(shape, dtype=np.float32).astype(spec.dtype, copy=False)}


def measure_latency(baseline: Runner, target: Runner, plan: LatencyPlan, progress: bool = True) -> dict[str, Any]:
    """Baseline and target latency per batch size and the target's speedup (baseline p50 / target p50)."""
    from resnext_deploy.console import progress_bar

    per_pair = plan.iterations or 1
    total = 2 * len(plan.batch_sizes) * per_pair
    per_batch: dict[str, Any] = {}
    rng = np.random.default_rng(plan.seed)
    with progress_bar(progress) as bar:
        task = bar.add_task("latency", total=total)
        for batch in plan.batch_sizes:
            row: dict[str, Any] = {}
            for side, runner in (("baseline", baseline), ("target", target)):
                bar.update(task, description=f"latency {side} batch {batch}")
                try:
                    feed = random_feed(runner, batch, rng)
                    row[side] = summarize(_measure(runner, feed, plan, lambda n: bar.advance(task, n)), batch)
                except InputError as exc:
                    row = {"skipped": f"batch {batch}: {exc.message}"}
                    bar.advance(task, per_pair * (2 if side == "baseline" else 1))
                    break
            if "skipped" not in row:
                row["speedup"] = row["baseline"]["p50_ms"] / row["target"]["p50_ms"] if row["target"]["p50_ms"] > 0 else None
            per_batch[str(batch)] = row
    return {
        "note": RANDOM_NOTE, "inputs": "random", "warmup": plan.warmup,
        "iterations": plan.iterations if plan.duration is None else None, "duration_s": plan.duration,
        "per_batch": per_batch,
    }
