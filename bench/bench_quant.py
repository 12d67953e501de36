"""INT8/FP16 quality, the mixed-precision curve and ORT CPU latency on resnext50d_32x4d, side by side in one run.

The model is ``proxy_model.build_proxy``: random weights with trained-like residual scales and
BatchNorm statistics re-estimated on generated images with natural-image statistics (1/f amplitude
spectrum, correlated colour channels, random occluding discs: "dead leaves"). BN is folded and exported with the
project's exporter, calibrated on ``--calib-size`` images (timed), and compared on held-out images.

The mixed-precision curve (``--curve``, on by default) runs the sensitivity analysis and the
fallback search of ``export --target-cosine`` on the benchmark proxy and on the harsher proxy, for
the onnxruntime and tensorrt recipes: layers left in float vs held-out logits cosine vs INT8/FP32
latency, and ``bench/mixed_precision.png``.

Run: ``.venv/bin/python bench/bench_quant.py`` (``--quick`` for a small smoke run; ``--openvino`` adds the
openvino recipe with u8 and s8 activations and times every artifact on OpenVINO as well).
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from proxy_model import DEFAULT_RESIDUAL_GAMMA, PROXIES, build_proxy, natural_images  # noqa: E402

CURVE_TARGETS = {"benchmark": 0.9995, "harsh": 0.999}  # held-out logits cosine the fallback aims for
LATENCY_TARGETS = {"benchmark": 0.70, "harsh": 0.75}  # INT8/FP32 on ORT at that cosine (issue 9)


def build_fp32(path: Path, size: int, bn_images: np.ndarray, residual_gamma: float, proxy: str = "benchmark") -> str:
    """A proxy model (see proxy_model.py), BN folded and exported with the project's exporter."""
    import onnx

    from resnext_deploy.exporters.fold import fold_batchnorm
    from resnext_deploy.exporters.onnx_export import export_to_onnx, simplify

    model = build_proxy(bn_images, residual_gamma, proxy=proxy)
    proto, _ = simplify(export_to_onnx(fold_batchnorm(model).model, size), size)
    onnx.save(proto, str(path))
    return "exporters (fold_batchnorm + export_to_onnx + simplify)"


def session(path: Path, threads: int):
    import onnxruntime as ort

    from resnext_deploy.exporters.parity import ort_session

    options = ort.SessionOptions()
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    # several sessions live side by side here: idle spinning threads of one would steal the cores of another
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3  # FP16-region graphs make ORT warn about every Mul it cannot fold
    return ort_session(path, threads=threads, options=options)


def logits(path: Path, images: np.ndarray, threads: int) -> np.ndarray:
    sess = session(path, threads)
    return np.concatenate([sess.run(None, {"input": images[i : i + 16]})[0] for i in range(0, len(images), 16)])


def latencies(models: dict[str, Path], threads: int, rounds: int, iters: int) -> dict[str, float]:
    """Median batch-1 latency (ms), rounds interleaved across models so CPU contention hits all alike."""
    sessions = {name: session(path, threads) for name, path in models.items()}
    x = np.random.default_rng(1).standard_normal((1, 3, 224, 224)).astype(np.float32)
    for sess in sessions.values():
        for _ in range(5):
            sess.run(None, {"input": x})
    samples: dict[str, list[float]] = {name: [] for name in sessions}
    for _ in range(rounds):
        for name, sess in sessions.items():
            for _ in range(iters):
                start = time.perf_counter()
                sess.run(None, {"input": x})
                samples[name].append((time.perf_counter() - start) * 1000)
    return {name: statistics.median(values) for name, values in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calib-size", type=int, default=512)
    parser.add_argument("--heldout", type=int, default=64)
    parser.add_argument("--bn-images", type=int, default=256)
    parser.add_argument("--method", default="auto", help="auto: each recipe's own default method")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--residual-gamma", type=float, default=DEFAULT_RESIDUAL_GAMMA,
                        help="scale of each residual branch's last BatchNorm (see proxy_model.py)")
    parser.add_argument("--variants", action="store_true", help="also time ORT recipe variants")
    parser.add_argument("--openvino", action="store_true",
                        help="add the openvino recipe (u8 and s8 activations) and time every artifact on OpenVINO too")
    parser.add_argument("--table", action=argparse.BooleanOptionalAction, default=True,
                        help="the FP32/FP16/INT8 table on the benchmark proxy")
    parser.add_argument("--curve", action=argparse.BooleanOptionalAction, default=True,
                        help="the mixed-precision curve (onnxruntime and tensorrt recipes) and bench/mixed_precision.png")
    parser.add_argument("--curve-proxies", default=",".join(PROXIES), help="proxies of the curve (see proxy_model.py)")
    parser.add_argument("--tune-size", type=int, default=128, help="tuning images of the sensitivity analysis and search")
    parser.add_argument("--probe-images", type=int, default=8, help="tuning images each site is measured on")
    parser.add_argument("--curve-heldout", type=int, default=128, help="held-out images every curve point is measured on")
    parser.add_argument("--max-fallback-layers", type=int, default=32)
    parser.add_argument("--quick", action="store_true", help="small smoke run (numbers not meaningful)")
    args = parser.parse_args()
    if args.quick:
        args.calib_size, args.heldout, args.bn_images, args.rounds, args.iters = 16, 8, 32, 1, 3
        args.tune_size, args.probe_images, args.curve_heldout, args.max_fallback_layers = 8, 4, 8, 4

    from rich.console import Console

    console = Console(width=140)
    size = 224
    with tempfile.TemporaryDirectory(prefix="bench-quant.") as tmp:
        work = Path(tmp)
        t0 = time.perf_counter()
        held_count = max(args.heldout, args.curve_heldout if args.curve else 0)
        images = natural_images(args.bn_images + args.calib_size + held_count + args.tune_size, size, seed=0)
        bn, calib, held, tune = np.split(images, np.cumsum([args.bn_images, args.calib_size, held_count]))
        console.print(f"generated {len(images)} images in {time.perf_counter() - t0:.1f}s")
        fp32 = work / "model.onnx"
        t0 = time.perf_counter()
        how = build_fp32(fp32, size, bn, args.residual_gamma)
        console.print(f"FP32 export via {how} in {time.perf_counter() - t0:.1f}s")
        if args.table:
            quant_table(args, console, work, fp32, calib, held[: args.heldout])
        if args.curve:
            curves_section(args, console, work, {"benchmark": fp32}, bn, calib, tune, held[: args.curve_heldout])


def quant_table(args: argparse.Namespace, console, work: Path, fp32: Path, calib: np.ndarray, held: np.ndarray) -> None:  # type: ignore[no-untyped-def]
    """FP32 / FP16 / INT8 (every recipe) on the benchmark proxy: cosine, agreement, latency (and OpenVINO's)."""
    from rich.table import Table

    from resnext_deploy.calibration.fp16 import convert_fp16
    from resnext_deploy.calibration.quantize import QuantizeConfig, quantize_int8
    from resnext_deploy.calibration.recipes import onnxruntime_recipe, openvino_recipe, tensorrt_recipe
    from resnext_deploy.numerics import mean_cosine

    models: dict[str, Path] = {"fp32": fp32}
    results = {}
    recipes = {
        "int8 onnxruntime": onnxruntime_recipe(),
        "int8 tensorrt": tensorrt_recipe(),
    }
    if args.openvino:
        recipes["int8 openvino (u8)"] = openvino_recipe()
        recipes["int8 openvino (s8)"] = openvino_recipe(activation_type="QInt8")
    if args.variants:
        recipes["int8 onnxruntime (grouped int8)"] = onnxruntime_recipe(keep_grouped_float=False)
        recipes["int8 tensorrt (grouped float)"] = tensorrt_recipe(keep_grouped_float=True)
        # the recipe before its float regions became FP16 (what a strongly typed TensorRT network then ran in FP32)
        recipes["int8 tensorrt (fp32 regions)"] = dataclasses.replace(tensorrt_recipe(), float_regions="fp32")
    for name, recipe in recipes.items():
        out = work / f"{name.replace(' ', '_').replace('(', '').replace(')', '')}.onnx"
        method = recipe.default_method if args.method == "auto" else args.method
        results[name] = quantize_int8(fp32, out, calib, QuantizeConfig(manifest_sha256="bench", method=method, recipe=recipe, cache_dir=work / "cache", progress=True))
        models[name] = out
    for name, result in results.items():
        how = "statistics from the cache" if result.stats_cache_hit else f"calibration {result.calibration_seconds:.1f}s"
        console.print(f"{name}: {result.method} on {result.calibration_images} images, {how}, total {result.seconds:.1f}s")
    t0 = time.perf_counter()
    convert_fp16(fp32, work / "model.fp16.onnx")
    models["fp16"] = work / "model.fp16.onnx"
    console.print(f"fp16 conversion {time.perf_counter() - t0:.1f}s")

    reference = logits(fp32, held, args.threads)
    cosines = {name: mean_cosine(reference, logits(path, held, args.threads)) for name, path in models.items()}
    top1 = {name: float(np.mean(logits(path, held, args.threads).argmax(1) == reference.argmax(1)))
            for name, path in models.items()}
    lat = latencies(models, args.threads, args.rounds, args.iters)
    ov_lat, ov_cos = openvino_side(models, held, reference, args) if args.openvino else ({}, {})

    table = Table(title=f"resnext50d_32x4d (random weights, residual gamma {args.residual_gamma}, BN re-estimated), "
                        f"{args.method} calibration method, ORT CPU batch 1, {args.threads} threads")
    columns = ["model", "cosine vs fp32", "top-1 agree", "latency ms", "ratio vs fp32", "Q/DQ nodes"]
    if ov_lat:
        columns += ["OpenVINO cosine", "OpenVINO ms", "OpenVINO / ORT fp32"]
    for column in columns:
        table.add_column(column, justify="right" if column != "model" else "left")
    for name in models:
        qdq = f"{results[name].quantize_linear_nodes}/{results[name].dequantize_linear_nodes}" if name in results else "-"
        row = [name, f"{cosines[name]:.6f}", f"{top1[name]:.3f}", f"{lat[name]:.1f}", f"{lat[name] / lat['fp32']:.3f}", qdq]
        if ov_lat:
            row += [f"{ov_cos[name]:.6f}", f"{ov_lat[name]:.1f}", f"{ov_lat[name] / lat['fp32']:.3f}"]
        table.add_row(*row)
    console.print(table)
    console.print("targets: int8 onnxruntime cosine >= 0.999, fp16 >= 0.9999, int8 onnxruntime latency ratio <= 0.45, "
                  "calibration of 512 images < 180 s on 2 cores")


def curves_section(args: argparse.Namespace, console, work: Path, built: dict[str, Path], bn: np.ndarray,  # type: ignore[no-untyped-def]
                   calib: np.ndarray, tune: np.ndarray, held: np.ndarray) -> None:
    """Mixed-precision curve per proxy and recipe (see mixed_precision_curve.py), a table each, and the picture."""
    from mixed_precision_curve import curve, measure, plot
    from rich.table import Table

    from resnext_deploy.calibration.recipes import onnxruntime_recipe, tensorrt_recipe

    curves = []
    for proxy in [name.strip() for name in args.curve_proxies.split(",") if name.strip()]:
        if proxy not in built:
            built[proxy] = work / f"model.{proxy}.onnx"
            t0 = time.perf_counter()
            build_fp32(built[proxy], 224, bn, args.residual_gamma, proxy)
            console.print(f"{proxy} proxy FP32 export in {time.perf_counter() - t0:.1f}s")
        for recipe in (onnxruntime_recipe(), tensorrt_recipe()):
            method = recipe.default_method if args.method == "auto" else args.method
            item, paths = curve(built[proxy], proxy, recipe, method, CURVE_TARGETS[proxy], calib, tune, work,
                                args.probe_images, args.max_fallback_layers)
            measure(item, built[proxy], paths, held, lambda models: latencies(models, args.threads, args.rounds, args.iters))
            curves.append(item)
            table = Table(title=f"{proxy} proxy, {recipe.name} recipe ({method}): {item.layers} INT8 layers, full INT8 "
                                f"tuning cosine {item.full_int8_tuning_cosine:.5f}; sensitivity of {len(tune)} tuning images "
                                f"({args.probe_images} per site) in {item.sensitivity_seconds:.0f}s; "
                                f"search: {item.search_steps} steps")
            for column in ("layers in float", "MAC share", "held-out cosine", "top-1 agree", "INT8/FP32 latency", ""):
                table.add_column(column, justify="right")
            for point in item.points:
                mark = f"<- export --target-cosine {item.target:g}" if point.chosen else ""
                ratio = "-" if point.latency_ratio is None else f"{point.latency_ratio:.3f}"
                table.add_row(str(point.layers_in_float), f"{point.cost_share:.1%}", f"{point.cosine:.5f}",
                              f"{point.agreement:.3f}", ratio, mark)
            console.print(table)
            chosen = item.point(item.chosen)
            met = chosen.cosine >= CURVE_TARGETS[proxy] and (chosen.latency_ratio or 0.0) <= LATENCY_TARGETS[proxy]
            console.print(f"  {proxy}/{recipe.name}: --target-cosine {item.target:g} chose {item.chosen} layer(s): held-out "
                          f"cosine {chosen.cosine:.5f}, latency x{chosen.latency_ratio or float('nan'):.3f} of FP32 "
                          f"(target: >= {CURVE_TARGETS[proxy]} at <= {LATENCY_TARGETS[proxy]}: {'met' if met else 'NOT met'})")
    try:
        plot(curves, ROOT / "bench" / "mixed_precision.png", LATENCY_TARGETS)
        console.print(f"wrote {ROOT / 'bench' / 'mixed_precision.png'}")
    except ImportError:
        console.print("matplotlib is not installed: no picture")
    console.print("sensitivity target: resnext50d_32x4d with 128 tuning images in < 300 s on 2 cores "
                  "(timings on a shared machine vary: compare within one run)")


def openvino_side(models: dict[str, Path], held: np.ndarray, reference: np.ndarray, args: argparse.Namespace):  # type: ignore[no-untyped-def]
    """(median batch-1 ms, cosine vs ORT fp32) of every artifact compiled by the OpenVINO backend's own settings."""
    from resnext_deploy.engines import BuildOptions
    from resnext_deploy.engines.openvino.backend import compile_onnx
    from resnext_deploy.engines.openvino.config import compile_config
    from resnext_deploy.engines.openvino.environment import capabilities, reduced_float_precision

    options = BuildOptions(threads=args.threads)
    requests = {}
    for name, path in models.items():
        precision = "fp32" if name == "fp32" else ("fp16" if name == "fp16" else "int8")
        config = compile_config(precision, options, reduced_float_precision(capabilities()))
        requests[name] = compile_onnx(path, config)[0].create_infer_request()
    from resnext_deploy.numerics import mean_cosine

    cos = {name: mean_cosine(reference, np.concatenate([r.infer({"input": held[i : i + 16]})[0].copy()
                                                   for i in range(0, len(held), 16)]))
           for name, r in requests.items()}
    x = np.random.default_rng(1).standard_normal((1, 3, 224, 224)).astype(np.float32)
    samples: dict[str, list[float]] = {name: [] for name in requests}
    for _ in range(args.rounds):
        for name, request in requests.items():
            for index in range(3 + args.iters):
                start = time.perf_counter()
                request.infer({"input": x})
                if index >= 3:
                    samples[name].append((time.perf_counter() - start) * 1000)
    return {name: statistics.median(values) for name, values in samples.items()}, cos


if __name__ == "__main__":
    main()
