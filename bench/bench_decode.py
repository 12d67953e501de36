"""Decode + eval-transform throughput of data.preprocess.load_images: threads vs processes, and how worker
processes start (fork, the old default; spawn, the default now; forkserver).

Writes real-size (500x375 / 375x500) photo-like JPEGs to a temp folder, then times each
executor and worker count side by side in one run (a pool's start-up included, as a calibration
run pays it). Usage: python bench/bench_decode.py [N]
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from resnext_deploy.data import preprocess
from resnext_deploy.data.datasets import scan_images
from resnext_deploy.data.preprocess import load_images
from resnext_deploy.zoo import PreprocessConfig


def _write_images(folder: Path, count: int) -> None:
    rng = np.random.default_rng(0)
    for i in range(count):
        width, height = (500, 375) if i % 2 else (375, 500)
        coarse = rng.integers(0, 256, size=(height // 25 + 2, width // 25 + 2, 3), dtype=np.uint8)
        image = np.asarray(Image.fromarray(coarse).resize((width, height), Image.Resampling.BICUBIC), dtype=np.int16)
        image += rng.integers(-20, 21, size=image.shape, dtype=np.int16)
        Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(folder / f"img_{i:05d}.JPEG", quality=90)


def main(count: int = 256) -> None:
    cfg = PreprocessConfig(interpolation="bicubic")
    with tempfile.TemporaryDirectory() as tmp:
        _write_images(Path(tmp), count)
        records = scan_images(tmp).records
        load_images(records[:8], cfg, workers=1, progress=False)
        print(f"{count} JPEGs (500x375), 224 bicubic eval transform")
        print(f"{'executor':<22}{'workers':>8}{'img/s':>10}")
        chosen = preprocess.PROCESS_START_METHOD
        runs = [("thread", 1, None), ("thread", 2, None), ("thread", 4, None)]
        runs += [("process", workers, method) for workers in (2, 4) for method in ("fork", "spawn", "forkserver")]
        for executor, workers, method in runs:
            preprocess.PROCESS_START_METHOD = method or chosen
            start = time.perf_counter()
            load_images(records, cfg, workers=workers, progress=False, executor=executor)
            label = executor if method is None else f"process ({method})"
            print(f"{label:<22}{workers:>8}{count / (time.perf_counter() - start):>10.1f}")
        preprocess.PROCESS_START_METHOD = chosen


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 256)
