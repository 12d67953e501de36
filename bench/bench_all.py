"""End-to-end side-by-side benchmark: PyTorch eager FP32 vs our FP32 / FP16 / INT8 artifacts on every CPU engine.

Usage: ``python bench/bench_all.py [--model resnext50d_32x4d] [--iterations 40] [--threads N] [--work DIR]
[--backends onnxruntime,openvino] [--precisions fp32,fp16,int8] [--results FILE]``.
Builds the model once with random weights (saved to a checkpoint so every artifact has the same weights),
exports FP32, FP16 and INT8 with ``run_export`` (INT8 calibrated on generated natural-ish images, once per
recipe: the onnxruntime recipe, and the openvino recipe when OpenVINO is benchmarked), then times batch 1
and 8 with each runner's pure-inference clock in one run, and writes ``bench/RESULTS.md``. Rows: PyTorch
eager, ONNX Runtime FP32/FP16/INT8, OpenVINO FP32 (strict f32) / FP16 (at the CPU's reduced float type) /
INT8, plus each INT8 graph on the other engine (recipe comparison, and the same-graph cosine reference).
OpenVINO start-up is timed cold (read + compile the ONNX) and from the exported compiled model.
Targets: INT8 batch-1 >= 3x faster than eager FP32 and >= 2.2x faster than our FP32 ONNX (ONNX Runtime);
OpenVINO INT8 <= 0.30x ORT FP32 and <= 0.4x OpenVINO f32 with cosine within 0.0005 of ORT on the same
graph; OpenVINO FP16 <= 0.5x ORT FP32 with cosine >= 0.9999; cached start-up >= 3x faster than cold.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from resnext_deploy import machine  # noqa: E402
from resnext_deploy.engines import BuildOptions, Runner, resolve_backend  # noqa: E402
from resnext_deploy.files import write_text  # noqa: E402
from resnext_deploy.numerics import mean_cosine  # noqa: E402
from resnext_deploy.verification.accuracy import run_logits  # noqa: E402
from resnext_deploy.verification.latency import random_feed, summarize  # noqa: E402
from resnext_deploy.verification.runners import TorchRunner  # noqa: E402

RESULTS = Path(__file__).with_name("RESULTS.md")
BATCHES = (1, 8)
ORT, OV = "onnxruntime", "openvino"
TITLES = {ORT: "ORT", OV: "OpenVINO"}


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


def export_all(
    model: str, work: Path, calib_size: int, method: str, precisions: tuple[str, ...] = ("fp32", "fp16", "int8"),
    recipes: tuple[str, ...] = (ORT,),
) -> tuple[Path, dict[str, Path]]:
    """Proxy weights saved once, then exports of exactly those weights: one per precision, INT8 once per recipe.

    Keys: ``fp32``, ``fp16``, ``int8`` (the first recipe) and ``int8-<recipe>`` for the others.
    """
    import torch

    from resnext_deploy.export import CalibrationOptions, ExportOptions, run_export
    from resnext_deploy.zoo import get_model_spec

    checkpoint = work / "proxy.pth"
    if not checkpoint.is_file():
        from proxy_model import build_proxy
        from proxy_model import natural_images as bn_images

        spec = get_model_spec(model)
        size = spec.preprocess.input_size
        proxy = build_proxy(bn_images(128, size, seed=5), model_name=spec.timm_name)
        torch.save(proxy.state_dict(), checkpoint)
    images = work / "images"
    if not images.is_dir():
        natural_images(images, max(calib_size, 16))
    jobs = [(p, p, ORT) for p in precisions if p != "int8"]
    if "int8" in precisions:
        jobs += [("int8" if i == 0 else f"int8-{r}", "int8", r) for i, r in enumerate(recipes)]
    dirs: dict[str, Path] = {}
    for key, precision, recipe in jobs:
        out = work / key
        if not (out / "report.json").is_file():
            started = time.perf_counter()
            run_export(ExportOptions(
                model=model, precision=precision, backend=ORT, recipe=recipe, weights=str(checkpoint), output=out,
                force=True, calibration=CalibrationOptions(data=images if precision == "int8" else None, size=calib_size,
                                                           method=method, cache_dir=work / "cache"),
            ), command=["bench_all.py"])
            print(f"export {key}: {time.perf_counter() - started:.1f}s", file=sys.stderr)
        dirs[key] = out / ("model.onnx" if precision == "fp32" else f"model.{precision}.onnx")
    return checkpoint, dirs


def openvino_startup(path: Path, threads: int, repeats: int) -> dict[str, float]:
    """Median seconds to a ready OpenVINO model: cold (read + compile the ONNX) and from the exported compiled model."""
    from resnext_deploy.engines.base import precision_of
    from resnext_deploy.engines.openvino import OpenVinoBackend
    from resnext_deploy.engines.openvino.backend import compile_onnx
    from resnext_deploy.engines.openvino.config import compile_config
    from resnext_deploy.engines.openvino.environment import capabilities, reduced_float_precision

    options = BuildOptions(threads=threads)
    config = compile_config(precision_of(path, options), options, reduced_float_precision(capabilities()))
    cold = [compile_onnx(path, config)[1] for _ in range(repeats)]
    cached = []
    for _ in range(repeats):
        runner = OpenVinoBackend().load(path, options)
        assert runner.start_mode == "cached", runner.start_reason
        cached.append(runner.startup_seconds)
    return {"cold": statistics.median(cold), "cached": statistics.median(cached)}


def compare(runners: dict[str, Runner], images: np.ndarray) -> dict[str, dict]:
    """Mean logits cosine of each runner vs the first (PyTorch eager)."""
    rows: dict[str, dict] = {}
    reference = None
    for name, runner in runners.items():
        logits = run_logits(runner, images, len(images)).astype(np.float64)
        reference = logits if reference is None else reference
        rows[name] = {"cosine": mean_cosine(reference, logits)}
    return rows


def int8_method(work: Path, key: str = "int8") -> str:
    """The calibration method an INT8 export really used (``auto`` resolves per recipe)."""
    return json.loads((work / key / "report.json").read_text())["calibration"]["method"]


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


def _label(backend: str, key: str, recipes: tuple[str, ...]) -> str:
    """``ORT INT8``, ``OpenVINO INT8 (onnxruntime recipe)``: the recipe is named where it is not the engine's own."""
    precision, _, recipe = key.partition("-")
    recipe = recipe or recipes[0]
    label = f"{TITLES[backend]} {precision.upper()}"
    return label if precision != "int8" or recipe == (backend if backend in recipes else recipes[0]) else f"{label} ({recipe} recipe)"


def make_runners(artifacts: dict[str, Path], backends: tuple[str, ...], recipes: tuple[str, ...], threads: int,
                 startup_repeats: int) -> tuple[dict[str, Runner], dict[str, dict[str, float]], dict[str, str]]:
    """(runners by label, OpenVINO start-up by label, OpenVINO compute precision by label): every artifact on every engine."""
    runners: dict[str, Runner] = {}
    startup: dict[str, dict[str, float]] = {}
    computes: dict[str, str] = {}
    for backend_name in backends:
        backend = resolve_backend(backend_name)[0]
        for key, path in artifacts.items():
            options = BuildOptions(precision=key.split("-")[0], threads=threads)
            label = _label(backend_name, key, recipes)
            if backend_name == OV:
                built = backend.build(path, options)
                computes[label] = built.metadata["inference_precision"]
                startup[label] = openvino_startup(path, threads, startup_repeats)
            runners[label] = backend.load(path, options)
    return runners, startup, computes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnext50d_32x4d")
    parser.add_argument("--iterations", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--calib-size", type=int, default=256)
    parser.add_argument("--calib-method", default="auto", help="the recipe's default (minmax for onnxruntime)")
    parser.add_argument("--work", type=Path, default=None, help="keep exports here (reused when present)")
    parser.add_argument("--backends", default=f"{ORT},{OV}", help="CPU engines to compare (comma-separated)")
    parser.add_argument("--precisions", default="fp32,fp16,int8")
    parser.add_argument("--no-eager", action="store_true", help="leave PyTorch eager out (ratios then vs ORT FP32)")
    parser.add_argument("--startup-repeats", type=int, default=3)
    parser.add_argument("--results", type=Path, default=RESULTS, help="markdown file to write")
    args = parser.parse_args()

    import torch

    from resnext_deploy.exporters.models import build_model
    from resnext_deploy.zoo import get_model_spec

    backends = tuple(b for b in args.backends.split(",") if b)
    if OV in backends and not get_backend_available(OV):
        print("openvino is not installed here: benchmarking ONNX Runtime only", file=sys.stderr)
        backends = tuple(b for b in backends if b != OV)
    recipes = (ORT, OV) if OV in backends else (ORT,)
    precisions = tuple(p for p in args.precisions.split(",") if p)
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-all."))
    work.mkdir(parents=True, exist_ok=True)
    spec = get_model_spec(args.model)
    checkpoint, artifacts = export_all(args.model, work, args.calib_size, args.calib_method, precisions, recipes)
    threads = args.threads or BuildOptions().intra_op_threads
    torch.set_num_threads(threads)
    size = spec.preprocess.input_size
    runners: dict[str, Runner] = {}
    if not args.no_eager:
        net, _ = build_model(spec, str(checkpoint))
        runners["PyTorch eager FP32"] = TorchRunner(net, size, threads)
    engine_runners, startup, computes = make_runners(artifacts, backends, recipes, threads, args.startup_repeats)
    runners.update(engine_runners)
    from proxy_model import natural_images as held_out

    check = held_out(32, size, seed=99)
    with contextlib.ExitStack() as stack:
        active = {name: stack.enter_context(runner) for name, runner in runners.items()}
        rows = compare(active, check)
        for batch in BATCHES:
            for name, times in blocked_latency(active, batch, args.warmup, args.iterations).items():
                rows[name][batch] = summarize(times, batch)
                print(f"{name} batch {batch}: p50 {rows[name][batch]['p50_ms']:.1f} ms", file=sys.stderr)
    reference_name = next(iter(rows))
    base = rows[reference_name]
    ort_fp32 = rows.get("ORT FP32", base)[1]["p50_ms"]
    lines = [
        f"# bench_all: {args.model} (proxy weights, see bench/proxy_model.py), {dt.date.today().isoformat()}",
        "",
        "Command: `python bench/bench_all.py "
        + " ".join(a for a in sys.argv[1:]) + "` (`make bench`). Pure inference time from each runner's clock, "
        f"random inputs for latency, 4 rounds of blocks ({args.warmup} warm-up + {args.iterations // 4} timed runs per runtime each), "
        f"{threads} threads. INT8: Q/DQ, " + ", ".join(
            f"{r} recipe ({int8_method(work, 'int8' if i == 0 else f'int8-{r}')})" for i, r in enumerate(recipes))
        + f" calibration on {args.calib_size} generated images; cosine on 32 held-out generated images.",
        "",
        f"| runtime | computes in | batch 1 p50 ms | speed-up vs {reference_name} | time / ORT FP32 | batch 8 p50 ms | img/s (b8) "
        f"| logits cosine vs {reference_name} |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, row in rows.items():
        lines.append(
            f"| {name} | {computes.get(name, '-')} | {row[1]['p50_ms']:.1f} | {base[1]['p50_ms'] / row[1]['p50_ms']:.2f}x "
            f"| {row[1]['p50_ms'] / ort_fp32:.2f} | {row[8]['p50_ms']:.1f} | {row[8]['images_per_s']:.1f} | {row['cosine']:.6f} |"
        )
    lines += ["", *targets(rows, reference_name)]
    if startup:
        lines += ["", "OpenVINO start-up (median of "
                  f"{args.startup_repeats}): cold = read + compile the ONNX; cached = import the exported compiled model.",
                  "", "| artifact | cold s | cached s | speed-up |", "|---|---|---|---|"]
        lines += [f"| {name} | {t['cold']:.2f} | {t['cached']:.2f} | {t['cold'] / t['cached']:.1f}x |" for name, t in startup.items()]
    env = machine.describe()  # the record doctor prints: engine libraries included
    lines += [
        "",
        "## Machine",
        "",
        f"- CPU: {env['cpu']}, {env['cpu_count']} logical cores, {env['usable_cores']} usable by this process",
        f"- Python {env['python']} on {env['platform']}",
        "- " + ", ".join(f"{k} {v}" for k, v in env["packages"].items()),
        "- Note: the CPU may be shared with other jobs while this ran; compare ratios within one run, not absolute times across runs.",
        "",
    ]
    write_text(args.results, "\n".join(lines))
    print("\n".join(lines))


def get_backend_available(name: str) -> bool:
    """Whether the named engine can run here."""
    from resnext_deploy.engines import get_spec

    return bool(get_spec(name).backend().available()[0])


def targets(rows: dict[str, dict], reference_name: str) -> list[str]:
    """The issue's targets (batch 1), each with its measured value, for the rows present."""
    def p50(name: str) -> float | None:
        return rows[name][1]["p50_ms"] if name in rows else None

    out: list[str] = []
    eager, ort_fp32, ort_int8 = p50("PyTorch eager FP32"), p50("ORT FP32"), p50("ORT INT8")
    if eager and ort_int8 and ort_fp32:
        out.append(f"- ORT INT8 vs eager FP32 {eager / ort_int8:.2f}x (target >= 3x), vs ORT FP32 {ort_fp32 / ort_int8:.2f}x (target >= 2.2x)")
    ov_int8, ov_fp32, ov_fp16 = p50("OpenVINO INT8"), p50("OpenVINO FP32"), p50("OpenVINO FP16")
    if ov_int8 and ort_fp32:
        same_graph = rows.get(f"ORT INT8 ({OV} recipe)")
        gap = abs(rows["OpenVINO INT8"]["cosine"] - same_graph["cosine"]) if same_graph else None
        out.append(f"- OpenVINO INT8 / ORT FP32 {ov_int8 / ort_fp32:.2f} (target <= 0.30)"
                   + (f", / OpenVINO f32 {ov_int8 / ov_fp32:.2f} (target <= 0.4)" if ov_fp32 else "")
                   + (f", cosine gap to ORT on the same graph {gap:.6f} (target <= 0.0005)" if gap is not None else ""))
    if ov_fp16 and ort_fp32:
        out.append(f"- OpenVINO FP16 / ORT FP32 {ov_fp16 / ort_fp32:.2f} (target <= 0.5), cosine {rows['OpenVINO FP16']['cosine']:.6f} "
                   "(target >= 0.9999)")
    return [line + f" (cosines vs {reference_name})" if "cosine" in line else line for line in out]


if __name__ == "__main__":
    main()
