"""How many probe images the sensitivity analysis needs: site noises and fallback order against a larger count.

For each proxy (``proxy_model.py``) the FP32 model is exported with the project's exporter,
calibrated on generated images with natural-image statistics, and analysed by
``calibration.sensitivity.analyse_sensitivity`` (the export's own analysis) with each probe count
on the same tuning images. Every count is compared with the largest: rank correlation of the site
noises, their median and largest relative difference, and whether the fallback order (what the
search walks) starts with the same layers. The wall time of each analysis is printed beside it:
run on a quiet machine.

Run: ``.venv/bin/python bench/bench_probes.py`` (about 8 min on 2 cores), ``make bench-probes``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_quant import build_fp32  # noqa: E402
from proxy_model import DEFAULT_RESIDUAL_GAMMA, natural_images  # noqa: E402


def ranks(values: np.ndarray) -> np.ndarray:
    return np.argsort(np.argsort(values, kind="stable"), kind="stable").astype(np.float64)


def compare(reference, other, precision: str) -> dict[str, object]:  # type: ignore[no-untyped-def]
    """Site noises and fallback order of ``other`` against ``reference`` (two SensitivityResults)."""
    a = np.array([site.output_nsr for site in reference.sites])
    b = np.array([site.output_nsr for site in other.sites])
    measured = a > 0
    relative = np.abs(b[measured] - a[measured]) / a[measured]
    order_a, order_b = reference.fallback_order(precision), other.fallback_order(precision)
    same_prefix = next((k for k in range(min(len(order_a), len(order_b))) if order_a[k] != order_b[k]), len(order_a))
    return {
        "rank_correlation": float(np.corrcoef(ranks(a), ranks(b))[0, 1]),
        "median_difference": float(np.median(relative)),
        "max_difference": float(np.max(relative)),
        "same_order_prefix": same_prefix,
        "first_16_same_set": len(set(order_a[:16]) & set(order_b[:16])),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--proxies", default="harsh,benchmark")
    parser.add_argument("--counts", default="32,16,8", help="probe counts; the first is the reference")
    parser.add_argument("--recipe", default="openvino")
    parser.add_argument("--calib-size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="smoke run (numbers not meaningful)")
    args = parser.parse_args()
    counts = [int(c) for c in args.counts.split(",")]
    bn_count = 256
    if args.quick:
        counts, args.calib_size, bn_count = [4, 2], 8, 16

    from rich.console import Console
    from rich.table import Table

    from resnext_deploy.calibration.quantize import QuantizeConfig, prepare_quantization
    from resnext_deploy.calibration.recipes import get_recipe
    from resnext_deploy.calibration.sensitivity import analyse_sensitivity
    from resnext_deploy.environment import cpu_model

    console = Console(width=140)
    images = natural_images(bn_count + args.calib_size + max(counts), 224, seed=0)
    bn, calib, tune = np.split(images, np.cumsum([bn_count, args.calib_size]))
    recipe = get_recipe(args.recipe)
    with tempfile.TemporaryDirectory(prefix="bench-probes.") as tmp:
        for proxy in [p.strip() for p in args.proxies.split(",") if p.strip()]:
            fp32 = Path(tmp) / f"{proxy}.onnx"
            build_fp32(fp32, 224, bn, DEFAULT_RESIDUAL_GAMMA, proxy)
            config = QuantizeConfig(manifest_sha256=f"bench-probes-{proxy}", method=recipe.default_method,
                                    recipe=recipe.name, cache_dir=Path(tmp) / "cache", progress=False)
            results, seconds = {}, {}
            with prepare_quantization(fp32, calib, config) as setup:
                for count in counts:
                    started = time.perf_counter()
                    results[count] = analyse_sensitivity(setup, tune, probe_images=count, threads=args.threads,
                                                         progress=False)
                    seconds[count] = time.perf_counter() - started
            table = Table(title=f"resnext50d_32x4d, {proxy} proxy, {recipe.name} recipe, {len(results[counts[0]].sites)} "
                                f"sites: probe counts against {counts[0]}")
            for column in ("probe images", "seconds", "rank corr.", "median diff.", "max diff.",
                           "fallback order: same first", "first 16: same set"):
                table.add_column(column, justify="right")
            for count in counts:
                row = compare(results[counts[0]], results[count], "bf16")
                table.add_row(str(count), f"{seconds[count]:.1f}", f"{row['rank_correlation']:.4f}",
                              f"{row['median_difference']:.1%}", f"{row['max_difference']:.1%}",
                              str(row["same_order_prefix"]), f"{row['first_16_same_set']}/16")
            console.print(table)
    console.print(f"machine: {cpu_model()}, {args.threads} threads; command: .venv/bin/python bench/bench_probes.py "
                  + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
