"""The local pool: this machine's cores, without Ray.

Exports, builds and evaluation shards run in a process pool (spawned workers: no forked ONNX
Runtime or OpenMP threads); each cell's latency is timed in this process while the pool is idle,
so no two latency measurements, and nothing else of ours, share the cores.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor, wait
from typing import Any

from resnext_deploy.environment import usable_cores
from resnext_deploy.sweep import cells
from resnext_deploy.sweep.schedule import Event, Work


class InlineExecutor(Executor):
    """Runs each call at submit time in this process: one worker without a pool's start-up cost."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:  # type: ignore[override]
        future: Future = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except Exception as exc:  # noqa: BLE001 - handed to the caller through the future
            future.set_exception(exc)
        return future


class LocalPool:
    """``workers`` processes of this machine (one: everything in this process)."""

    kind = "local"

    def __init__(self, workers: int | None = None) -> None:
        self.workers = workers or usable_cores()

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "workers": self.workers, "cpus": usable_cores()}

    def eval_slots(self) -> int:
        return self.workers

    def latency_threads(self, requested: int | None) -> int:
        return requested or usable_cores()

    def check_paths(self, paths: list[Any]) -> None:
        """Every path is on this machine already (checked by the caller)."""

    def close(self) -> None:
        """Nothing to release: the pool lives inside :meth:`run`."""

    def _executor(self) -> Executor:
        if self.workers == 1:
            return InlineExecutor()
        return ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"), initializer=cells.quiet)

    def run(self, work: Work) -> Iterator[Event]:
        """FP32 exports, then builds, then per cell its shards and (pool idle) its latency; one event per step."""
        with self._executor() as pool:
            fp32 = {job.spec.name: pool.submit(cells.export_fp32, job) for job in work.fp32_jobs}
            failed_models: dict[str, BaseException] = {}
            for model, future in fp32.items():
                error = future.exception()
                if error is not None:
                    failed_models[model] = error
                yield Event("fp32", model, None if error else future.result(), error)
            jobs = [job for job in work.cell_jobs if job.spec.name not in failed_models]
            for job in work.cell_jobs:
                if job.spec.name in failed_models:
                    yield Event("cell", job.key, None, failed_models[job.spec.name])
            builds = {job.key: pool.submit(cells.build_cell, job) for job in jobs}
            wait(builds.values())  # no build may overlap a latency measurement below
            for job in jobs:
                build = builds[job.key]
                if build.exception() is not None:
                    yield Event("cell", job.key, None, build.exception())
                    continue
                shards = [pool.submit(cells.evaluate_shard, job, index, records, 1)
                          for index, records in enumerate(work.shards)]
                errors = [f.exception() for f in shards if f.exception() is not None]
                if errors:
                    yield Event("cell", job.key, None, errors[0])
                    continue
                try:
                    record = cells.finish_cell(job, work.latency_threads, build.result(), *(f.result() for f in shards))
                except Exception as exc:  # noqa: BLE001 - one cell's failure is recorded, the others go on
                    yield Event("cell", job.key, None, exc)
                else:
                    yield Event("cell", job.key, record, None)
