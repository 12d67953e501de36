"""The mixed-precision curve of one FP32 model and recipe: layers in float vs held-out cosine vs INT8/FP32 latency.

Used by ``bench_quant.py``. The sensitivity analysis and the fallback order are the ones
``resnext-deploy export --target-cosine`` uses; the search runs on the tuning images as the export
does, and every point is then measured on held-out images (neither calibration nor tuning).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

CURVE_POINTS = (0, 1, 2, 3, 4, 6, 8, 12, 16, 24, 32)


@dataclass
class CurvePoint:
    layers_in_float: int
    cost_share: float
    cosine: float = 0.0
    agreement: float = 0.0
    latency_ratio: float | None = None
    chosen: bool = False


@dataclass
class Curve:
    proxy: str
    recipe: str
    target: float
    layers: int
    full_int8_tuning_cosine: float
    sensitivity_seconds: float
    search_steps: int
    chosen: int
    reached_on_tuning: bool
    points: list[CurvePoint] = field(default_factory=list)

    def point(self, k: int) -> CurvePoint:
        return next(p for p in self.points if p.layers_in_float == k)


def curve(fp32: Path, proxy: str, recipe: Any, method: str, target: float, calib: np.ndarray, tune: np.ndarray,
          work: Path, probe_images: int, max_layers: int) -> tuple[Curve, dict[int, Path]]:
    """Analyse, search as the export does, and write the INT8 artifact of every curve point; returns (curve, paths)."""
    import onnx

    from resnext_deploy.calibration.fallback import Budget, Measurement, Targets, search_fallback
    from resnext_deploy.calibration.quantize import QuantizeConfig, prepare_quantization
    from resnext_deploy.calibration.sensitivity import analyse_sensitivity, run_logits
    from resnext_deploy.verification.accuracy import compare_logits

    with prepare_quantization(fp32, calib, QuantizeConfig(manifest_sha256="bench", method=method, recipe=recipe, cache_dir=work / "cache", progress=True)) as setup:
        started = time.perf_counter()
        result = analyse_sensitivity(setup, tune, probe_images=probe_images)
        seconds = time.perf_counter() - started
        order = result.fallback_order()
        costs = {layer.name: layer.cost_share for layer in result.layers}
        reference = run_logits(fp32, tune)

        def evaluate(float_layers: list[str]) -> Measurement:
            return Measurement(compare_logits(reference, run_logits(setup.quantize(float_layers)[0], tune), None))

        search = search_fallback(order, evaluate, Targets(cosine=target), Budget(max_layers=max_layers),
                                 predict_cosine=lambda k: result.predicted_cosine(order[:k]))
        ks = sorted({k for k in CURVE_POINTS if k <= len(order)} | {search.chosen.layers_in_float})
        paths: dict[int, Path] = {}
        for k in ks:
            paths[k] = work / f"{proxy}-{recipe.name}-{k}.onnx"
            onnx.save(setup.quantize(order[:k])[0], str(paths[k]))
    points = [CurvePoint(k, sum(costs[name] for name in order[:k]), chosen=k == search.chosen.layers_in_float) for k in ks]
    return Curve(proxy, recipe.name, target, len(result.layers), result.full_int8["cosine"], seconds,
                 len(search.steps), search.chosen.layers_in_float, search.reached, points), paths


def measure(curve_: Curve, fp32: Path, paths: dict[int, Path], held: np.ndarray, latencies: Any) -> None:
    """Held-out cosine and agreement of every point, and INT8/FP32 latency from ``latencies(models)`` (median ms)."""
    from resnext_deploy.calibration.sensitivity import run_logits
    from resnext_deploy.numerics import mean_cosine

    reference = run_logits(fp32, held)
    for point in curve_.points:
        logits = run_logits(paths[point.layers_in_float], held)
        point.cosine = mean_cosine(reference, logits)
        point.agreement = float(np.mean(reference.argmax(1) == logits.argmax(1)))
    if latencies is not None:
        times = latencies({"fp32": fp32, **{str(k): path for k, path in paths.items()}})
        for point in curve_.points:
            point.latency_ratio = times[str(point.layers_in_float)] / times["fp32"]


def plot(curves: list[Curve], path: Path, latency_targets: dict[str, float]) -> None:
    """Cosine (top) and INT8/FP32 latency (bottom) against layers in float, one column per proxy."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    proxies = list(dict.fromkeys(c.proxy for c in curves))
    fig = Figure(figsize=(5.5 * len(proxies), 7))
    axes = fig.subplots(2, len(proxies), squeeze=False, sharex="col")
    for column, proxy in enumerate(proxies):
        top, bottom = axes[0][column], axes[1][column]
        for item in (c for c in curves if c.proxy == proxy):
            ks = [p.layers_in_float for p in item.points]
            line = top.plot(ks, [1 - p.cosine for p in item.points], marker="o", label=f"{item.recipe} recipe")[0]
            chosen = item.point(item.chosen)
            top.plot([chosen.layers_in_float], [1 - chosen.cosine], marker="*", markersize=14, color=line.get_color())
            if all(p.latency_ratio is not None for p in item.points):
                bottom.plot(ks, [p.latency_ratio for p in item.points], marker="o", color=line.get_color(),
                            label=f"{item.recipe} recipe")
            top.axhline(1 - item.target, color="gray", linestyle="--", linewidth=1)
        if proxy in latency_targets:
            bottom.axhline(latency_targets[proxy], color="gray", linestyle="--", linewidth=1)
        top.set_yscale("log")
        bottom.set_yscale("log")  # the tensorrt recipe's FP16 regions run through casts on ORT CPU: several x FP32
        top.set_title(f"resnext50d_32x4d, {proxy} proxy")
        top.set_ylabel("1 - logits cosine vs FP32 (held-out)")
        bottom.set_ylabel("INT8 / FP32 latency, ORT CPU batch 1")
        bottom.set_xlabel("layers left in float (fallback order)")
        top.legend(fontsize=8)
        bottom.legend(fontsize=8)
    fig.suptitle("mixed-precision fallback: * = what export --target-cosine chose (dashed: targets)")
    fig.tight_layout()
    fig.savefig(str(path), dpi=100)
