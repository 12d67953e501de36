"""What the sweep driver hands a scheduler (local pool or Ray) and what it gets back."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from resnext_deploy.sweep.cells import CellJob, Fp32Job


@dataclass
class Work:
    """The unfinished steps: FP32 exports, cells, the evaluation shards (image records) and the latency threads."""

    fp32_jobs: list[Fp32Job]
    cell_jobs: list[CellJob]
    shards: list[list[Any]] = field(default_factory=list)  # empty: random inputs, evaluated in the latency step
    latency_threads: int = 1


@dataclass
class Event:
    """One finished step: ``kind`` "fp32" (name = model) or "cell" (name = cell key); ``error`` when it failed."""

    kind: str
    name: str
    record: dict[str, Any] | None
    error: BaseException | None = None


class Scheduler(Protocol):
    """Runs :class:`Work` somewhere and yields an :class:`Event` per finished step."""

    kind: str

    def describe(self) -> dict[str, Any]: ...

    def eval_slots(self) -> int: ...

    def latency_threads(self, requested: int | None) -> int: ...

    def check_paths(self, paths: list[Any]) -> None: ...

    def run(self, work: Work) -> Iterator[Event]: ...

    def close(self) -> None: ...
