"""The evaluation split into shards that run anywhere (a process pool, Ray tasks) and merge into one run's numbers.

Shards are cut on evaluation-batch boundaries, so every batch a runner sees holds the same images
as in the single-process run; merged in shard order, the logits are exactly those of one run.
Each shard decodes its own images and opens its own runners on the artifacts, by path.
"""

from __future__ import annotations

import os
import socket
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from resnext_deploy.data.preprocess import iter_batches
from resnext_deploy.errors import InputError
from resnext_deploy.layout import FP32_NAME
from resnext_deploy.metadata import read_metadata
from resnext_deploy.report import read_report
from resnext_deploy.verification.accuracy import run_logits
from resnext_deploy.verification.runners import onnx_baseline, target_side, torch_baseline
from resnext_deploy.zoo import PreprocessConfig


def shard_bounds(count: int, batch_size: int, shards: int) -> list[tuple[int, int]]:
    """``[start, stop)`` of each shard over ``count`` images, on ``batch_size`` boundaries, as even as batches allow."""
    batches = -(-count // batch_size)
    shards = max(1, min(shards, batches))
    per, extra = divmod(batches, shards)
    bounds, start = [], 0
    for index in range(shards):
        stop = min(count, start + (per + (index < extra)) * batch_size)
        bounds.append((start, stop))
        start = stop
    return bounds


def where() -> dict[str, Any]:
    """Where this code runs: host, process, and the Ray node when inside a Ray task."""
    place: dict[str, Any] = {"host": socket.gethostname(), "pid": os.getpid()}
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        place["ray_node"] = ray.get_runtime_context().get_node_id()
    return place


@dataclass
class ShardResult:
    """Logits of one shard, which images they belong to, and how long decoding and inference took."""

    index: int
    reference: np.ndarray
    produced: np.ndarray
    labels: np.ndarray | None
    relpaths: list[str]
    skipped: list[str]
    decode_s: float
    infer_s: float
    ran_on: dict[str, Any] = field(default_factory=dict)
    span: tuple[float, float] = (0.0, 0.0)  # wall-clock start and end (time.time), to time shards run side by side

    def facts(self) -> dict[str, Any]:
        return {"index": self.index, "images": len(self.relpaths), "skipped": len(self.skipped),
                "decode_s": round(self.decode_s, 4), "infer_s": round(self.infer_s, 4), "ran_on": self.ran_on}


def eval_shard(
    directory: Path, records: Sequence[Any], index: int, batch_size: int, baseline: str = "onnx",
    backend: str | None = None, threads: int = 1,
) -> ShardResult:
    """Decode ``records`` (one decoding thread) and run baseline and target on them (``threads`` each)."""

    begun = time.time()
    directory = Path(directory)
    report = read_report(directory)
    target_onnx = directory / (report.artifacts.named(report.precision or "fp32") or report.artifacts.fp32 or FP32_NAME)
    cfg = PreprocessConfig.from_dict(read_metadata(target_onnx)["preprocess"])
    base = (torch_baseline(report, cfg.input_size, threads) if baseline == "torch"
            else onnx_baseline(directory, report, threads))
    target = target_side(directory, report, backend, threads)
    reference, produced, labels, relpaths, skipped = [], [], [], [], []
    decode_s = infer_s = 0.0
    with base.runner as base_runner, target.runner as target_runner:
        batches = iter_batches(records, cfg, batch_size, workers=1, progress=False)
        while True:
            started = time.perf_counter()
            loaded = next(batches, None)
            decode_s += time.perf_counter() - started
            if loaded is None:
                break
            started = time.perf_counter()
            reference.append(run_logits(base_runner, loaded.array, batch_size))
            produced.append(run_logits(target_runner, loaded.array, batch_size))
            infer_s += time.perf_counter() - started
            labels.append(loaded.labels)
            relpaths += [r.relpath for r in loaded.records]
            skipped += [name for name, _ in loaded.skipped]
    if not reference:
        raise InputError(f"no image of evaluation shard {index} could be read", hint="check --eval-data")
    known = None if any(batch is None for batch in labels) else np.concatenate(labels)
    return ShardResult(index, np.concatenate(reference), np.concatenate(produced), known, relpaths, skipped,
                       decode_s, infer_s, where(), (begun, time.time()))


@dataclass
class EvalLogits:
    """Shards merged in order: what ``verify_directory`` uses instead of evaluating itself."""

    shards: list[ShardResult]

    def for_set(self, eval_set: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """The merged logits and labels, after checking they cover ``eval_set``'s images in its order."""
        shards = sorted(self.shards, key=lambda s: s.index)
        relpaths = [p for s in shards for p in s.relpaths]
        skipped = [p for s in shards for p in s.skipped]
        dropped = set(skipped)
        expected = [r.relpath for r in eval_set.records if r.relpath not in dropped]
        if relpaths != expected:
            raise InputError("the evaluation shards do not cover the evaluation subset in order",
                             hint="the image folder changed during the run; run again")
        labels = None if any(s.labels is None for s in shards) else np.concatenate([s.labels for s in shards])
        eval_set.source.update(count=len(relpaths), skipped=skipped, shards=throughput(shards))
        return (np.concatenate([s.reference for s in shards]), np.concatenate([s.produced for s in shards]), labels)


def throughput(shards: Sequence[ShardResult]) -> dict[str, Any]:
    """Images/s of decoding and of inference (baseline + target) per worker, of all shards together, and each shard's facts.

    ``wall_s`` runs from the first shard's start to the last one's end (opening runners included).
    """
    images = sum(len(s.relpaths) for s in shards)
    decode_s, infer_s = sum(s.decode_s for s in shards), sum(s.infer_s for s in shards)
    wall_s = max(s.span[1] for s in shards) - min(s.span[0] for s in shards)
    return {
        "count": len(shards), "images": images, "decode_s": round(decode_s, 4), "infer_s": round(infer_s, 4),
        "wall_s": round(wall_s, 4), "images_per_s": images / wall_s if wall_s > 0 else None,
        "decode_images_per_s_per_worker": images / decode_s if decode_s > 0 else None,
        "infer_images_per_s_per_worker": images / infer_s if infer_s > 0 else None,
        "shards": [s.facts() for s in shards],
    }
