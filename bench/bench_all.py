"""End-to-end side-by-side benchmark: PyTorch eager FP32 vs our ONNX Runtime FP32 / FP16 / INT8 artifacts.

Usage: ``python bench/bench_all.py [--model resnext50d_32x4d] [--iterations 20] [--threads N] [--work DIR]``.
Builds the model once with random weights (saved to a checkpoint so every artifact has the same weights),
exports FP32, FP16 and INT8 with ``run_export`` (INT8 calibrated on generated natural-ish images), then
times batch 1 and 8 with each runner's pure-inference clock in one run, and writes ``bench/RESULTS.md``.
Targets: INT8 batch-1 >= 3x faster than eager FP32 and >= 2.2x faster than our FP32 ONNX.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from resnext_deploy.engines import BuildOptions, Runner, get_backend  # noqa: E402
from resnext_deploy import environment  # noqa: E402
from resnext_deploy.files import write_text  # noqa: E402
from resnext_deploy.numerics import mean_cosine  # noqa: E402
from resnext_deploy.verification.accuracy import run_logits  # noqa: E402
from resnext_deploy.verification.latency import random_feed, summarize  # noqa: E402
from resnext_deploy.verification.runners import TorchRunner  # noqa: E402

RESULTS = Path(__file__).with_name("RESULTS.md")
BATCHES = (1, 8)


def natural_images(folder: Path, count: int, size: int = 256, seed: int = 0) -> Path:
    """JPEGs of proxy_model's natural-statistics images (the distribution its BatchNorms were estimated on)."""
    from PIL import Image

    from proxy_model import MEAN, STD
    from proxy_model import natural_images as images

    folder.mkdir(parents=True, exist_ok=True)
    pixels = np.clip((images(count, size, seed) * STD + MEAN) * 255.0, 0, 255).astype(np.uint8)
    for index, image in enumerate(pixels):
        Image.fromarray(image.transpose(1, 2, 0)).save(folder / f"img_{index:04d}.jpg", quality=92)
    return folder


def export_all(model: str, work: Path, calib_size: int, method: str) -> tuple[Path, dict[str, Path]]:
    """Proxy weights saved once, then FP32/FP16/INT8 exports of exactly those weights."""
    import torch

    from resnext_deploy.pipeline import CalibrationOptions, ExportOptions, run_export
    from resnext_deploy.zoo import get_model_spec

    checkpoint = work / "proxy.pth"
    if not checkpoint.is_file():
        from proxy_model import build_proxy
        from proxy_model import natural_images as bn_images

        size = get_model_spec(model).preprocess.input_size
        torch.save(build_proxy(bn_images(128, size, seed=5)).state_dict(), checkpoint)
    images = work / "images"
    if not images.is_dir():
        natural_images(images, max(calib_size, 16))
    dirs: dict[str, Path] = {}
    for precision in ("fp32", "fp16", "int8"):
        out = work / precision
        if not (out / "report.json").is_file():
            started = time.perf_counter()
            run_export(ExportOptions(
                model=model, precision=precision, backend="onnxruntime", weights=str(checkpoint), output=out, force=True,
                calibration=CalibrationOptions(data=images if precision == "int8" else None, size=calib_size, method=method,
                                               cache_dir=work / "cache"),
            ), command=["bench_all.py"])
            print(f"export {precision}: {time.perf_counter() - started:.1f}s", file=sys.stderr)
        dirs[precision] = out / ("model.onnx" if precision == "fp32" else f"model.{precision}.onnx")
    return checkpoint, dirs


def compare(runners: dict[str, Runner], images: np.ndarray) -> dict[str, dict]:
    """Mean logits cosine of each runner vs the first (PyTorch eager)."""
    rows: dict[str, dict] = {}
    reference = None
    for name, runner in runners.items():
        logits = run_logits(runner, images, len(images)).astype(np.float64)
        reference = logits if reference is None else reference
        rows[name] = {"cosine": mean_cosine(reference, logits)}
    return rows


def int8_method(work: Path) -> str:
    """The calibration method the INT8 export really used (``auto`` resolves per recipe)."""
    import json

    return json.loads((work / "int8" / "report.json").read_text())["calibration"]["method"]


def blocked_latency(
    runners: dict[str, Runner], batch: int, warmup: int, iterations: int, rounds: int = 4
) -> dict[str, list[float]]:
    """Rounds of blocks: each runner warms up then runs alone, so no runtime's idle threads steal another's
    cores (interleaving single runs does exactly that); rotating the order over the rounds spreads outside
    load and the after-effects of the previous block evenly."""
    feeds = {name: random_feed(runner, batch, np.random.default_rng(batch)) for name, runner in runners.items()}
    times: dict[str, list[float]] = {name: [] for name in runners}
    per_round = max(1, -(-iterations // rounds))
    names = list(runners)
    for round_index in range(rounds):
        order = names[round_index % len(names):] + names[: round_index % len(names)]  # no runtime always follows another
        for name in order:
            runner = runners[name]
            for index in range(warmup + per_round):
                runner.infer(feeds[name])
                if index >= warmup:
                    times[name].append(float(runner.last_inference_time or 0.0))
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnext50d_32x4d")
    parser.add_argument("--iterations", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--calib-size", type=int, default=256)
    parser.add_argument("--calib-method", default="auto", help="the recipe's default (minmax for onnxruntime)")
    parser.add_argument("--work", type=Path, default=None, help="keep exports here (reused when present)")
    args = parser.parse_args()

    import torch

    from resnext_deploy.exporters.models import build_model
    from resnext_deploy.zoo import get_model_spec

    work = args.work or Path(tempfile.mkdtemp(prefix="bench-all."))
    work.mkdir(parents=True, exist_ok=True)
    spec = get_model_spec(args.model)
    checkpoint, artifacts = export_all(args.model, work, args.calib_size, args.calib_method)
    threads = args.threads or BuildOptions().intra_op_threads
    torch.set_num_threads(threads)
    net, _ = build_model(spec, str(checkpoint))
    size = spec.preprocess.input_size
    ort = get_backend("onnxruntime")
    runners = {"PyTorch eager FP32": TorchRunner(net, size, threads)}
    for precision, path in artifacts.items():
        runners[f"ORT {precision.upper()}"] = ort.load(path, BuildOptions(precision=precision, threads=threads))
    from proxy_model import natural_images as held_out

    check = held_out(32, size, seed=99)
    with contextlib.ExitStack() as stack:
        active = {name: stack.enter_context(runner) for name, runner in runners.items()}
        rows = compare(active, check)
        for batch in BATCHES:
            for name, times in blocked_latency(active, batch, args.warmup, args.iterations).items():
                rows[name][batch] = summarize(times, batch)
                print(f"{name} batch {batch}: p50 {rows[name][batch]['p50_ms']:.1f} ms", file=sys.stderr)
    eager = rows["PyTorch eager FP32"]
    lines = [
        f"# bench_all: {args.model} (proxy weights, see bench/proxy_model.py), {dt.date.today().isoformat()}",
        "",
        "Command: `python bench/bench_all.py "
        + " ".join(a for a in sys.argv[1:]) + "` (`make bench`). Pure inference time from each runner's clock, "
        f"random inputs for latency, 4 rounds of blocks ({args.warmup} warm-up + {args.iterations // 4} timed runs per runtime each), "
        f"{threads} intra-op threads. "
        f"INT8: Q/DQ, onnxruntime recipe, {int8_method(work)} calibration on {args.calib_size} generated images; "
        "cosine on 32 held-out generated images.",
        "",
        "| runtime | batch 1 p50 ms | speedup vs eager | batch 8 p50 ms | speedup vs eager | img/s (b8) | logits cosine vs PyTorch |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, row in rows.items():
        lines.append(
            f"| {name} | {row[1]['p50_ms']:.1f} | {eager[1]['p50_ms'] / row[1]['p50_ms']:.2f}x | {row[8]['p50_ms']:.1f} "
            f"| {eager[8]['p50_ms'] / row[8]['p50_ms']:.2f}x | {row[8]['images_per_s']:.1f} | {row['cosine']:.6f} |"
        )
    int8, fp32 = rows["ORT INT8"][1]["p50_ms"], rows["ORT FP32"][1]["p50_ms"]
    vs_eager, vs_fp32 = eager[1]["p50_ms"] / int8, fp32 / int8
    env = environment.describe()
    lines += [
        "",
        f"Targets (batch 1): INT8 vs eager FP32 {vs_eager:.2f}x (target >= 3x: {'met' if vs_eager >= 3 else 'NOT met'}), "
        f"INT8 vs ORT FP32 {vs_fp32:.2f}x (target >= 2.2x: {'met' if vs_fp32 >= 2.2 else 'NOT met'}).",
        "",
        "## Machine",
        "",
        f"- CPU: {env['cpu']}, {env['cpu_count']} logical cores, {env['usable_cores']} usable by this process",
        f"- Python {env['python']} on {env['platform']}",
        "- " + ", ".join(f"{k} {v}" for k, v in env["packages"].items()),
        "- Note: the CPU may be shared with other jobs while this ran; compare ratios within one run, not absolute times across runs.",
        "",
    ]
    write_text(RESULTS, "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
