"""Pure-inference latency (the runner's own ``last_inference_time``) per batch size, on random inputs."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from resnext_deploy.console import progress_bar
from resnext_deploy.engines.base import Runner
from resnext_deploy.errors import InputError

RANDOM_NOTE = (
    "latency measured on random inputs (data loading and preprocessing excluded); what each side's time covers "
    "is in latency.scope (TensorRT: end-to-end on host buffers, copies included)"
)


@dataclass
class LatencyPlan:
    """How long to measure each (runner, batch size) pair, as trtexec does.

    A timed warm-up (at least one run), then timed runs until both ``duration`` seconds have
    passed and ``iterations`` runs were made: cheap models get many samples, slow ones at least
    ``iterations``, and the cost of a measurement is bounded by time rather than a run count.
    """

    batch_sizes: tuple[int, ...]
    duration: float = 3.0
    iterations: int = 10
    warmup_s: float = 0.2
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


def timed_runs(run: Callable[[], float], plan: LatencyPlan, clock: Callable[[], float] = time.perf_counter) -> list[float]:
    """Warm up for ``plan.warmup_s`` (one run at least), then time runs until the budget and the count are met.

    ``run`` performs one inference and returns its own duration in seconds (the backend call alone).
    """
    end = clock() + plan.warmup_s
    run()
    while clock() < end:
        run()
    times: list[float] = []
    end = clock() + plan.duration
    while len(times) < max(plan.iterations, 1) or clock() < end:
        times.append(run())
    return times


def _measure(runner: Runner, feed: dict[str, np.ndarray], plan: LatencyPlan) -> list[float]:
    def run() -> float:
        runner.infer(feed)
        return float(runner.last_inference_time or 0.0)

    return timed_runs(run, plan)


def random_feed(runner: Runner, batch: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """A random float input of ``batch`` images in the runner's own input dtype."""
    name, spec = next(iter(runner.input_specs.items()))
    shape = (batch, *(dim for dim in spec.shape[1:]))
    return {name: rng.standard_normal(shape, dtype=np.float32).astype(spec.dtype, copy=False)}


def outside_range(batch: int, *runners: Runner) -> str | None:
    """Why ``batch`` cannot be timed on these runners (outside a TensorRT profile), or None when it can."""
    for runner in runners:
        low, high = runner.batch_range
        if batch < low or (high is not None and batch > high):
            limit = f"{low}..{high}" if high is not None else f"{low} and up"
            return f"batch {batch} is outside the {runner.backend} engine's batch range {limit}"
    return None


def measure_latency(baseline: Runner, target: Runner, plan: LatencyPlan, progress: bool = True) -> dict[str, Any]:
    """Baseline and target latency per batch size and the target's speedup (baseline p50 / target p50).

    Only batch sizes both runners accept are timed; the others are listed in ``skipped_batch_sizes`` with the reason.
    """

    per_batch: dict[str, Any] = {}
    skipped: dict[str, str] = {}
    rng = np.random.default_rng(plan.seed)
    with progress_bar(progress) as bar:
        task = bar.add_task("latency", total=2 * len(plan.batch_sizes))
        for batch in plan.batch_sizes:
            reason = outside_range(batch, baseline, target)
            if reason is not None:
                skipped[str(batch)] = reason
                per_batch[str(batch)] = {"skipped": reason}
                bar.advance(task, 2)
                continue
            row: dict[str, Any] = {}
            for side, runner in (("baseline", baseline), ("target", target)):
                bar.update(task, description=f"latency {side} batch {batch}")
                try:
                    feed = random_feed(runner, batch, rng)
                    row[side] = summarize(_measure(runner, feed, plan), batch)
                except InputError as exc:
                    row = {"skipped": f"batch {batch}: {exc.message}"}
                    bar.advance(task, 2 if side == "baseline" else 1)
                    break
                bar.advance(task, 1)
            if "skipped" not in row:
                row["speedup"] = row["baseline"]["p50_ms"] / row["target"]["p50_ms"] if row["target"]["p50_ms"] > 0 else None
            per_batch[str(batch)] = row
    return {
        "note": RANDOM_NOTE, "inputs": "random", "warmup_ms": plan.warmup_s * 1000.0,
        "min_iterations": plan.iterations, "duration_s": plan.duration, "per_batch": per_batch,
        "skipped_batch_sizes": skipped,
        "scope": {"baseline": baseline.latency_scope, "target": target.latency_scope},
    }
