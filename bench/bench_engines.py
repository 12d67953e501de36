"""ONNX Runtime latency and start-up per artifact in an export folder.

Usage: ``python bench/bench_engines.py [PATH ...] [--iterations N] [--warmup N] [--threads N]``.
PATHs are export directories or ONNX files; without any, ``make bench``'s resnext50d_32x4d exports in
``out/bench`` are used (made by bench_all's ``export_all`` when missing).
For each of ``model.onnx``, ``model.fp16.onnx``, ``model.int8.onnx`` found: batch-1 and batch-8
latency (p50/p99 of the runner's own pure-inference timing) and session start-up, cold (full graph
optimization) vs from the saved optimized graph, side by side in one run.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from resnext_deploy.engines import BuildOptions
from resnext_deploy.engines.onnxruntime import OnnxRuntimeBackend
from resnext_deploy.engines.onnxruntime.backend import _create_session, session_options
from resnext_deploy.engines.onnxruntime.environment import session_providers

ARTIFACTS = ("model.onnx", "model.fp16.onnx", "model.int8.onnx")


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def startup_seconds(path: Path, options: BuildOptions, *, optimize: bool, repeats: int) -> float:
    """Median time to create a ready session (graph load + optimization + kernel setup)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        session = _create_session(path, session_options(options, optimize=optimize), session_providers())
        times.append(time.perf_counter() - start)
        del session
    return statistics.median(times)


def latency(runner, shape: tuple[int, ...], warmup: int, iterations: int) -> tuple[float, float]:
    """(p50, p99) milliseconds of pure inference on random input of ``shape``."""
    feed = {"input": np.random.default_rng(0).standard_normal(shape, dtype=np.float32)}
    for _ in range(warmup):
        runner.infer(feed)
    times = []
    for _ in range(iterations):
        runner.infer(feed)
        times.append(runner.last_inference_time * 1e3)
    return _percentile(times, 50), _percentile(times, 99)


def artifacts(paths: list[Path], work: Path) -> list[Path]:
    """ONNX artifacts named on the command line (files, or the known names inside directories)."""
    if not paths:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from bench_all import export_all

        return list(export_all("resnext50d_32x4d", work, calib_size=256, method="auto")[1].values())
    found: list[Path] = []
    for path in paths:
        found += [path / name for name in ARTIFACTS if (path / name).is_file()] if path.is_dir() else [path]
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", type=Path, nargs="*", help="export directories or ONNX files")
    parser.add_argument("--work", type=Path, default=Path("out/bench"), help="where default exports live")
    parser.add_argument("--iterations", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--startup-repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    options = BuildOptions(threads=args.threads)
    backend = OnnxRuntimeBackend()
    found = artifacts(args.paths, args.work)
    if not found:
        print(f"no {', '.join(ARTIFACTS)} in {', '.join(map(str, args.paths))}", file=sys.stderr)
        return 2
    print(f"ONNX Runtime providers {list(session_providers())}, {options.intra_op_threads} intra-op threads")
    header = f"{'artifact':<18}{'b1 p50':>9}{'b1 p99':>9}{'b8 p50':>9}{'b8 p99':>9}{'start cold':>12}{'start saved':>12}{'speed-up':>9}"
    rows = []
    for path in found:
        artifact = backend.build(path, options)
        cold = startup_seconds(path, options, optimize=True, repeats=args.startup_repeats)
        saved = startup_seconds(artifact.path, options, optimize=False, repeats=args.startup_repeats)
        with backend.load(artifact, options) as runner:
            assert runner.start_mode == "saved-optimized", runner.start_reason
            shape = tuple(d if d > 0 else 1 for d in runner.input_specs["input"].shape)
            b1 = latency(runner, shape, args.warmup, args.iterations)
            b8 = latency(runner, (8, *shape[1:]), args.warmup, max(args.iterations // 3, 5))
        rows.append(
            f"{path.name:<18}{b1[0]:>7.1f}ms{b1[1]:>7.1f}ms{b8[0]:>7.1f}ms{b8[1]:>7.1f}ms"
            f"{cold * 1e3:>10.0f}ms{saved * 1e3:>10.0f}ms{cold / saved:>8.1f}x"
        )
    print(header)
    print("\n".join(rows))
    print("start-up: median session creation; target saved >= 2x faster than cold")
    return 0


if __name__ == "__main__":
    sys.exit(main())
