"""INT8/FP16 quality and ORT CPU latency on resnext50d_32x4d, measured side by side in one run.

Random weights (no download) with BatchNorm statistics re-estimated on generated images with
natural-image statistics (1/f amplitude spectrum, correlated colour channels, random occluding
discs: "dead leaves"), so activations have realistic ranges. BN is folded and exported with the
project's exporter, calibrated on ``--calib-size`` images (timed), and compared on held-out images.

Run: ``.venv/bin/python bench/bench_quant.py`` (``--quick`` for a small smoke run).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32).reshape(1, 3, 1, 1)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32).reshape(1, 3, 1, 1)


def natural_images(count: int, size: int, seed: int) -> np.ndarray:
    """Normalized (N,3,H,W) float32 images: pink-noise texture plus dead-leaves discs."""
    rng = np.random.default_rng(seed)
    fy = np.fft.fftfreq(size)[:, None]
    fx = np.fft.rfftfreq(size)[None, :]
    radius = np.sqrt(fx**2 + fy**2)
    radius[0, 0] = 1.0
    yy, xx = np.mgrid[0:size, 0:size]
    mixing = np.array([[1.0, 0.0, 0.0], [0.85, 0.5, 0.0], [0.7, 0.3, 0.6]], dtype=np.float32)
    out = np.empty((count, 3, size, size), dtype=np.float32)
    for i in range(count):
        alpha = rng.uniform(0.8, 1.3)
        spectrum = (rng.standard_normal((3,) + radius.shape) + 1j * rng.standard_normal((3,) + radius.shape)) / radius**alpha
        texture = np.fft.irfft2(spectrum, s=(size, size)).astype(np.float32)
        texture = np.einsum("ij,jhw->ihw", mixing, texture)
        texture = (texture - texture.mean()) / (texture.std() + 1e-6) * rng.uniform(0.08, 0.2)
        image = np.broadcast_to(rng.uniform(0.2, 0.8, (3, 1, 1)), (3, size, size)).copy()
        for _ in range(rng.integers(5, 25)):
            cy, cx = rng.uniform(0, size, 2)
            r = size * rng.uniform(0.03, 0.35)
            mask = (yy - cy) ** 2 + (xx - cx) ** 2 < r * r
            image[:, mask] = rng.uniform(0.0, 1.0, (3, 1))
        out[i] = np.clip(image + texture, 0.0, 1.0)
    return (out - MEAN) / STD


def build_fp32(path: Path, size: int, bn_images: np.ndarray, residual_gamma: float = 0.2) -> str:
    """resnext50d_32x4d, random weights, BN re-estimated on ``bn_images``, folded and exported.

    ``residual_gamma`` is the scale of each residual branch's last BatchNorm. timm initialises it
    to 0 (the branches then add nothing and quantizing them is never tested); trained ResNeXts end
    with small values. At 1.0 every branch adds unit variance to the stream and the random network
    turns chaotic: even FP16 loses more than 1e-4 of logits cosine there, unlike any trained model.
    """
    import onnx
    import timm
    import torch

    torch.manual_seed(0)
    model = timm.create_model("resnext50d_32x4d", pretrained=False, zero_init_last=False)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None  # cumulative average over all batches
        if type(module).__name__ == "Bottleneck":
            torch.nn.init.constant_(module.bn3.weight, residual_gamma)
    model.train()
    with torch.no_grad():
        for start in range(0, len(bn_images), 32):
            model(torch.from_numpy(bn_images[start : start + 32]))
    model.eval()
    try:
        from exporters.fold import fold_batchnorm
        from exporters.onnx_export import export_to_onnx, simplify

        proto = export_to_onnx(fold_batchnorm(model).model, size)
        proto, _ = simplify(proto, size)
        how = "exporters (fold_batchnorm + export_to_onnx + simplify)"
    except ImportError:
        buffer = path.with_suffix(".raw.onnx")
        torch.onnx.export(model, (torch.zeros(1, 3, size, size),), str(buffer), input_names=["input"],
                          output_names=["logits"], dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
                          opset_version=17, do_constant_folding=True, dynamo=False)
        proto = onnx.load(str(buffer))
        how = "torch.onnx.export (eval-mode BN folding)"
    onnx.save(proto, str(path))
    return how


def session(path: Path, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    # several sessions live side by side here: idle spinning threads of one would steal the cores of another
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def logits(path: Path, images: np.ndarray, threads: int) -> np.ndarray:
    sess = session(path, threads)
    return np.concatenate([sess.run(None, {"input": images[i : i + 16]})[0] for i in range(0, len(images), 16)])


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Mean per-sample cosine similarity of two logit matrices."""
    num = (a * b).sum(1)
    den = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return float(np.mean(num / den))


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
    parser.add_argument("--method", default="entropy")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--residual-gamma", type=float, default=0.2,
                        help="scale of each residual branch's last BatchNorm (see build_fp32)")
    parser.add_argument("--variants", action="store_true", help="also time ORT recipe variants")
    parser.add_argument("--quick", action="store_true", help="small smoke run (numbers not meaningful)")
    args = parser.parse_args()
    if args.quick:
        args.calib_size, args.heldout, args.bn_images, args.rounds, args.iters = 16, 8, 32, 1, 3

    from rich.console import Console
    from rich.table import Table

    from calibration.fp16 import convert_fp16
    from calibration.quantize import quantize_int8
    from calibration.recipes import onnxruntime_recipe, tensorrt_recipe

    console = Console(width=140)
    size = 224
    with tempfile.TemporaryDirectory(prefix="bench-quant.") as tmp:
        work = Path(tmp)
        t0 = time.perf_counter()
        images = natural_images(args.bn_images + args.calib_size + args.heldout, size, seed=0)
        bn, calib, held = np.split(images, [args.bn_images, args.bn_images + args.calib_size])
        console.print(f"generated {len(images)} images in {time.perf_counter() - t0:.1f}s")
        fp32 = work / "model.onnx"
        t0 = time.perf_counter()
        how = build_fp32(fp32, size, bn, args.residual_gamma)
        console.print(f"FP32 export via {how} in {time.perf_counter() - t0:.1f}s")

        models: dict[str, Path] = {"fp32": fp32}
        results = {}
        recipes = {
            "int8 onnxruntime": onnxruntime_recipe(),
            "int8 tensorrt": tensorrt_recipe(),
        }
        if args.variants:
            recipes["int8 onnxruntime (grouped int8)"] = onnxruntime_recipe(keep_grouped_float=False)
            recipes["int8 tensorrt (grouped float)"] = tensorrt_recipe(keep_grouped_float=True)
        for name, recipe in recipes.items():
            out = work / f"{name.replace(' ', '_').replace('(', '').replace(')', '')}.onnx"
            results[name] = quantize_int8(fp32, out, calib, manifest_sha256="bench", method=args.method,
                                          recipe=recipe, cache_dir=work / "cache", progress=True)
            models[name] = out
        first = next(iter(results.values()))
        console.print(f"calibration ({args.method}) of {first.calibration_images} images: "
                      f"{first.calibration_seconds:.1f}s; quantize with cached stats: "
                      + ", ".join(f"{n} {r.seconds:.1f}s" for n, r in list(results.items())[1:]))
        t0 = time.perf_counter()
        convert_fp16(fp32, work / "model.fp16.onnx")
        models["fp16"] = work / "model.fp16.onnx"
        console.print(f"fp16 conversion {time.perf_counter() - t0:.1f}s")

        reference = logits(fp32, held, args.threads)
        cosines = {name: cosine(reference, logits(path, held, args.threads)) for name, path in models.items()}
        top1 = {name: float(np.mean(logits(path, held, args.threads).argmax(1) == reference.argmax(1)))
                for name, path in models.items()}
        lat = latencies(models, args.threads, args.rounds, args.iters)

    table = Table(title=f"resnext50d_32x4d (random weights, residual gamma {args.residual_gamma}, BN re-estimated), "
                        f"{args.method} calibration, ORT CPU batch 1, {args.threads} threads")
    for column in ("model", "cosine vs fp32", "top-1 agree", "latency ms", "ratio vs fp32", "Q/DQ nodes"):
        table.add_column(column, justify="right" if column != "model" else "left")
    for name in models:
        qdq = f"{results[name].quantize_linear_nodes}/{results[name].dequantize_linear_nodes}" if name in results else "-"
        table.add_row(name, f"{cosines[name]:.6f}", f"{top1[name]:.3f}", f"{lat[name]:.1f}",
                      f"{lat[name] / lat['fp32']:.3f}", qdq)
    console.print(table)
    console.print("targets: int8 onnxruntime cosine >= 0.999, fp16 >= 0.9999, int8 onnxruntime latency ratio <= 0.45, "
                  "calibration of 512 images < 180 s on 2 cores")


if __name__ == "__main__":
    main()
