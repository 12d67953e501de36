"""Accuracy of target vs baseline on the same preprocessed images: top-k, agreement, cosine, SQNR."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from resnext_deploy.calibration.baseline_cache import BaselineLogits, array_sha256
from resnext_deploy.data.datasets import MIN_LABEL_COVERAGE, scan_images
from resnext_deploy.data.manifest import Manifest, check_disjoint, records_sha256, select_subset
from resnext_deploy.data.preprocess import iter_batches
from resnext_deploy.engines.base import Runner
from resnext_deploy.errors import InputError
from resnext_deploy.numerics import row_cosines
from resnext_deploy.zoo import PreprocessConfig

NO_LABELS_NOTE = "accuracy was not measured: the evaluation images have no labels; only agreement, cosine and SQNR vs the baseline are reported"
RANDOM_INPUTS_NOTE = "NO EVALUATION DATA: agreement, cosine and SQNR were measured on random inputs, which says little about accuracy on real images; pass --eval-data"


@dataclass
class EvalSet:
    """The evaluation subset: records decoded batch by batch (or random inputs), and where it came from.

    Images are never all held in memory at once, so a 50,000-image validation set verifies in the
    memory of one batch plus the two logit matrices.
    """

    source: dict[str, Any]
    cfg: PreprocessConfig
    records: list[Any] = field(default_factory=list)
    random_images: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.random_images) if self.random_images is not None else len(self.records)

    def batches(self, batch_size: int, progress: bool) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
        """(images, labels or None) per batch; records the decoded count and skipped files in ``source``."""
        if self.random_images is not None:
            for start in range(0, len(self.random_images), batch_size):
                yield self.random_images[start : start + batch_size], None
            return

        count, skipped = 0, []
        for loaded in iter_batches(self.records, self.cfg, batch_size, progress=progress):
            count += len(loaded)
            skipped += [name for name, _ in loaded.skipped]
            yield loaded.array, loaded.labels
        self.source.update(count=count, skipped=skipped)


def load_eval_set(
    eval_data: Path | None, labels_file: Path | None, size: int, seed: int, cfg: PreprocessConfig,
    calibration_manifest: Any, random_size: int, min_label_coverage: float | None = None,
) -> EvalSet:
    """A deterministic, calibration-disjoint subset of ``eval_data``; random inputs when there is none.

    ``calibration_manifest`` is a manifest file (ignored when absent) or a ``Manifest``. Nothing is
    decoded here, so the same call checks a command's evaluation data before any heavy work.
    """
    if eval_data is None:
        rng = np.random.default_rng(seed)
        count = min(size, random_size)
        images = rng.standard_normal((count, 3, cfg.input_size, cfg.input_size), dtype=np.float32)
        source = {"kind": "random", "count": count, "seed": seed, "note": RANDOM_INPUTS_NOTE}
        return EvalSet(source, cfg, random_images=images)

    coverage = MIN_LABEL_COVERAGE if min_label_coverage is None else min_label_coverage
    scan = scan_images(eval_data, labels_file=labels_file, min_label_coverage=coverage)
    subset = select_subset(scan.records, size, seed)
    disjoint_from = None
    if isinstance(calibration_manifest, Manifest):
        check_disjoint(calibration_manifest, subset)
        disjoint_from = "the calibration subset"
    elif calibration_manifest is not None and Path(calibration_manifest).is_file():
        check_disjoint(Manifest.read(calibration_manifest), subset)
        disjoint_from = str(calibration_manifest)
    source = {
        "kind": "images", "root": str(scan.root), "layout": scan.layout, "split": scan.split,
        "labels_file": str(scan.labels_file) if scan.labels_file else None, "available": len(scan.records),
        "requested": size, "seed": seed, "count": len(subset), "skipped": [],
        "labelled": scan.labelled, "checked_disjoint_from": disjoint_from,
        "label_coverage": {"labelled": len(scan.records), "images": len(scan.records) + len(scan.ignored)},
    }
    return EvalSet(source, cfg, records=subset)


def eval_logits(
    eval_set: EvalSet, baseline: Runner, target: Runner, batch_size: int, progress: bool,
    cached: BaselineLogits | None = None, seconds: dict[str, float] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Baseline and target logits over the whole set, batch by batch, and the labels (None when unlabelled).

    ``cached``: the FP32 logits come from the baseline cache (computed there on a miss) instead of ``baseline``.
    ``seconds``: filled with the time spent on each side (``baseline``, ``target``) and on decoding (``decode``).
    """
    reference, produced, labels = [], [], []
    spent = {"baseline": 0.0, "target": 0.0, "decode": 0.0}
    clock = time.perf_counter()
    for images, batch_labels in eval_set.batches(batch_size, progress):
        spent["decode"] += time.perf_counter() - clock
        clock = time.perf_counter()
        if cached is not None:
            cached.add(images)
        else:
            reference.append(run_logits(baseline, images, batch_size))
        spent["baseline"] += time.perf_counter() - clock
        clock = time.perf_counter()
        produced.append(run_logits(target, images, batch_size))
        labels.append(batch_labels)
        spent["target"] += time.perf_counter() - clock
        clock = time.perf_counter()
    if not produced:

        raise InputError("no evaluation image could be read", hint="check --eval-data")
    known = None if any(batch is None for batch in labels) else np.concatenate(labels)
    clock = time.perf_counter()
    base = cached.result() if cached is not None else np.concatenate(reference)
    spent["baseline"] += time.perf_counter() - clock
    if seconds is not None:
        seconds.update(spent)
    return base, np.concatenate(produced), known


def eval_images_sha256(eval_set: EvalSet) -> str:
    """The evaluation subset's identity: file contents in order, or the random inputs' bytes."""
    if eval_set.random_images is not None:
        return array_sha256(eval_set.random_images)
    return records_sha256(eval_set.records)


def _batches(images: np.ndarray, batch_size: int) -> Iterator[np.ndarray]:
    for start in range(0, len(images), batch_size):
        yield images[start : start + batch_size]


def eval_batch_size(requested: int, *runners: Runner) -> int:
    """``requested``, capped at the largest batch every runner accepts (a TensorRT engine's profile maximum)."""
    limits = [high for _, high in (runner.batch_range for runner in runners) if high is not None]
    return min([requested, *limits])


def run_logits(runner: Runner, images: np.ndarray, batch_size: int) -> np.ndarray:
    """Logits (float32) of ``runner`` over ``images``, in batches the runner accepts.

    Batches are at most ``batch_size`` and the runner's largest; a last batch below the runner's
    smallest (a profile with min > 1) is padded with copies of its last image, whose logits are dropped.
    """
    spec = next(iter(runner.input_specs.values()))
    name = next(iter(runner.input_specs))
    low, high = runner.batch_range
    step = min(batch_size, high) if high is not None else batch_size
    out = []
    for batch in _batches(images, step):
        count = len(batch)
        if count < low:
            batch = np.concatenate([batch, np.repeat(batch[-1:], low - count, axis=0)])
        logits = runner.infer({name: batch.astype(spec.dtype, copy=False)})
        out.append(np.asarray(next(iter(logits.values())), dtype=np.float32)[:count])
    return np.concatenate(out)


def _topk(logits: np.ndarray, labels: np.ndarray, k: int) -> float:
    k = min(k, logits.shape[1])
    top = np.argpartition(-logits, k - 1, axis=1)[:, :k]
    return float(100.0 * np.mean((top == labels[:, None]).any(axis=1)))


def compare_logits(reference: np.ndarray, target: np.ndarray, labels: np.ndarray | None) -> dict[str, Any]:
    """Agreement, cosine and SQNR always; top-1/top-5 (percent) and the drop when labels exist."""
    ref, tgt = reference.astype(np.float64), target.astype(np.float64)
    cosine = row_cosines(ref, tgt)
    noise = float(np.sum((ref - tgt) ** 2))
    signal = float(np.sum(ref**2))
    # identical logits have infinite SQNR: recorded as None plus identical_logits, so report.json stays strict JSON
    sqnr = None if noise == 0 or signal == 0 else float(10.0 * np.log10(signal / noise))
    result: dict[str, Any] = {
        "images": int(len(ref)),
        "top1_agreement": float(np.mean(ref.argmax(1) == tgt.argmax(1))),
        "mean_cosine": float(cosine.mean()),
        "min_cosine": float(cosine.min()),
        "sqnr_db": sqnr,
        "identical_logits": noise == 0,
        "max_abs_diff": float(np.max(np.abs(ref - tgt))),
        "accuracy_measured": labels is not None,
    }
    if labels is None:
        result.update(baseline_top1=None, baseline_top5=None, target_top1=None, target_top5=None,
                      top1_delta_pp=None, top1_drop_pp=None)
        return result
    b1, t1 = _topk(reference, labels, 1), _topk(target, labels, 1)
    result.update(
        baseline_top1=b1, baseline_top5=_topk(reference, labels, 5), target_top1=t1,
        target_top5=_topk(target, labels, 5), top1_delta_pp=t1 - b1, top1_drop_pp=b1 - t1,
    )
    return result
