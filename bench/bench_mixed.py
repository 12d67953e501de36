"""Mixed precision as the export builds it, on OpenVINO: held-out cosine vs latency, and what the export costs.

For each proxy (``proxy_model.py``: weights whose residual branches carry signal), one ImageNet-layout folder
of natural-looking JPEGs and the real CLI, in child processes, each with a cold statistics cache:

* ``export MODEL --weights proxy.pth --precision int8`` (the plain INT8 export: wall time, stages);
* the same with ``--target-cosine T`` (fallback precision ``auto``: bf16 on AVX-512-BF16/AMX CPUs);
* the same with ``--fallback-precision fp32`` (from the first's FP32 export and cache: not timed as an export);
* ``--precision fp16`` from the same FP32 export.

Reference points (``--references nncf,modelopt``, the default; ``reference_points.py``): NNCF's and NVIDIA
ModelOpt's INT8 Q/DQ ONNX, each tool in its own venv under ``out/bench-venvs/`` (``make bench-refs`` makes them;
a tool without one, or whose run fails, is left out with one line saying why), quantized from the plain INT8
export's FP32 ``model.onnx`` with the very images that export calibrated on (its calibration manifest, decoded
by our preprocessing into one ``.npy``). Their export time is the tool's child process wall, calibration
included (no FP32 export, no verify in it).

Then every artifact is compiled with the export's OpenVINO settings and timed side by side in one process,
alternating rounds, at batch 1 and 8: FP32, FP16 (bf16 on such CPUs), full INT8, the mixed artifacts and the
reference points. The held-out cosine is each export's own ``verify`` on its evaluation images (never tuning or
calibration images), read from its report.json beside the tuning cosine the search saw; a reference artifact
gets ``resnext-deploy verify`` on the bare file with the INT8 export's evaluation settings (the same images,
backend and cached FP32 logits).

Run: ``make bench-refs && .venv/bin/python bench/bench_mixed.py`` (about 25 min on 2 cores, plus the reference
quantizations); ``--quick`` for a smoke run (the reference path included). Time only on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from proxy_model import DEFAULT_RESIDUAL_GAMMA, MEAN, STD, build_proxy, natural_images  # noqa: E402
from reference_points import parse_tools, reference_points  # noqa: E402

NAMES = {"fp32": "int8", "int8": "int8", "fp16": "fp16", "mixed auto": "mixed auto", "mixed fp32": "mixed fp32"}


def write_folder(root: Path, split: str, classes: int, per_class: int, seed: int) -> None:
    """``root/split/<wnid>/<wnid>_<i>.JPEG``: natural-looking 256x256 images (the proxy's BN statistics' kind)."""
    from PIL import Image

    from resnext_deploy.data.samples import imagenet_wnids

    wnids = imagenet_wnids()
    images = natural_images(classes * per_class, 256, seed)
    pixels = np.clip((images * STD + MEAN) * 255.0 + 0.5, 0, 255).astype(np.uint8).transpose(0, 2, 3, 1)
    for cls in range(classes):
        wnid = wnids[cls * (len(wnids) // classes)]
        folder = root / split / wnid
        folder.mkdir(parents=True, exist_ok=True)
        for index in range(per_class):
            Image.fromarray(pixels[cls * per_class + index]).save(folder / f"{wnid}_{index}.JPEG", quality=92)


def export(args: argparse.Namespace, out: Path, cache: Path, *extra: str) -> tuple[float, dict]:
    """Run the CLI export; (wall seconds, report.json)."""
    command = [sys.executable, "-m", "resnext_deploy", "export", args.model, "--force", "--output", str(out),
               "--calib-data", str(args.data), "--calib-size", str(args.calib_size), "--eval-size", str(args.eval_size),
               "--cache-dir", str(cache), "--threads", str(args.threads), *extra]
    started = time.perf_counter()
    done = subprocess.run(command, env=os.environ | {"HF_HUB_OFFLINE": "1"}, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode not in (0, 1):
        sys.exit(f"export failed ({done.returncode}): {' '.join(command)}\n{done.stderr[-3000:]}")
    return wall, json.loads((out / "report.json").read_text())


def latencies(paths: dict[str, Path], batches: list[int], threads: int, rounds: int, iters: int) -> dict[str, dict[int, float]]:
    """Median ms per batch of each artifact on OpenVINO (the backend's own compile settings), alternating rounds."""
    from resnext_deploy.engines import BuildOptions, resolve_backend

    backend, _ = resolve_backend("openvino")
    runners = {name: backend.load(path, BuildOptions(threads=threads)) for name, path in paths.items()}
    for runner in runners.values():
        runner.__enter__()
    rng = np.random.default_rng(1)
    samples: dict[str, dict[int, list[float]]] = {name: {b: [] for b in batches} for name in paths}
    try:
        for batch in batches:
            x = rng.standard_normal((batch, 3, 224, 224)).astype(np.float32)
            for _ in range(rounds):
                for name, runner in runners.items():
                    feed = {next(iter(runner.input_specs)): x}
                    for index in range(2 + iters):
                        start = time.perf_counter()
                        runner.infer(feed)
                        if index >= 2:
                            samples[name][batch].append((time.perf_counter() - start) * 1000)
        precisions = {name: runner.inference_precision for name, runner in runners.items()}
    finally:
        for runner in runners.values():
            runner.__exit__(None, None, None)
    return {name: {b: statistics.median(v) for b, v in per.items()} | {"computes_in": precisions[name]}
            for name, per in samples.items()}


def held_out(report: dict) -> dict:
    """Held-out accuracy of a verified report: mean cosine, top-1 agreement, image count."""
    accuracy = ((report.get("verification") or {}).get("accuracy") or {})
    return {"cosine": accuracy.get("mean_cosine"), "agreement": accuracy.get("top1_agreement"),
            "images": accuracy.get("images")}


def cosine_of(name: str, reports: dict, refs: dict) -> float | None:
    """Held-out cosine of a timed artifact: 1 for FP32, a reference point's own verify, else its export's."""
    if name == "fp32":
        return 1.0
    return held_out(refs[name]["report"] if name in refs else reports[NAMES[name]])["cosine"]


def reference_entry(ref: dict) -> dict:
    """A reference point in results.json: versions, settings, times, held-out accuracy."""
    record = ref["record"]
    return {key: record.get(key) for key in ("tool", "versions", "settings", "calibration_images", "wall_seconds",
                                              "quantize_seconds", "quantize_linear_nodes")} | {
        "held_out": held_out(ref["report"]), "backend": (ref["report"].get("verification") or {}).get("backend")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnext50d_32x4d")
    parser.add_argument("--proxies", default="benchmark,harsh")
    parser.add_argument("--target-cosine", type=float, default=0.999)
    parser.add_argument("--calib-size", type=int, default=512)
    parser.add_argument("--eval-size", type=int, default=256, help="held-out images of every export's verify")
    parser.add_argument("--tune-size", type=int, default=128, help="tuning images of the mixed-precision search")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batches", default="1,8")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--work", type=Path, default=ROOT / "out" / "bench-mixed")
    parser.add_argument("--reuse", action="store_true",
                        help="time the artifacts of an earlier run in --work (reference points it lacks are made)")
    parser.add_argument("--quick", action="store_true", help="smoke run (numbers not meaningful)")
    parser.add_argument("--references", default="nncf,modelopt",
                        help="reference quantizers from the same FP32 ONNX and calibration images ('none': skip)")
    args = parser.parse_args()
    tools = parse_tools(args.references)
    if args.quick:
        args.calib_size, args.eval_size, args.tune_size, args.rounds, args.iters = 32, 16, 16, 1, 2
    import torch

    from resnext_deploy.environment import cpu_model

    args.work.mkdir(parents=True, exist_ok=True)
    args.data = args.work / "imagenet"
    if not args.reuse:
        write_folder(args.data, "train", 64, -(-(args.calib_size + args.tune_size) // 64), seed=10)
        write_folder(args.data, "val", 32, -(-args.eval_size // 32), seed=11)
    batches = [int(b) for b in args.batches.split(",")]
    results = {}
    for proxy in [p.strip() for p in args.proxies.split(",") if p.strip()]:
        work = args.work / proxy
        weights = work / "proxy.pth"
        runs: dict[str, tuple[float, dict]] = {}
        if not args.reuse:
            work.mkdir(parents=True, exist_ok=True)
            model = build_proxy(natural_images(256, 224, seed=12), DEFAULT_RESIDUAL_GAMMA, model_name=args.model,
                                proxy=proxy)
            torch.save(model.state_dict(), weights)
            common = ["--weights", str(weights), "--precision", "int8"]
            runs["int8"] = export(args, work / "int8", work / "cache-plain", *common)
            target = ["--target-cosine", str(args.target_cosine), "--tune-size", str(args.tune_size)]
            runs["mixed auto"] = export(args, work / "mixed-auto", work / "cache-mixed", *common, *target)
            fp32 = str(work / "int8" / "model.onnx")
            runs["mixed fp32"] = export(args, work / "mixed-fp32", work / "cache-mixed", "--fp32-from", fp32,
                                        "--precision", "int8", *target, "--fallback-precision", "fp32")
            runs["fp16"] = export(args, work / "fp16", work / "cache-plain", "--fp32-from", fp32, "--precision", "fp16")
            (work / "walls.json").write_text(json.dumps({k: v[0] for k, v in runs.items()}))
        walls = json.loads((work / "walls.json").read_text())
        reports = {name: json.loads((work / folder / "report.json").read_text()) for name, folder in
                   (("int8", "int8"), ("mixed auto", "mixed-auto"), ("mixed fp32", "mixed-fp32"), ("fp16", "fp16"))}
        paths = {"fp32": work / "int8" / "model.onnx", "fp16": work / "fp16" / "model.fp16.onnx",
                 "int8": work / "int8" / "model.int8.onnx", "mixed auto": work / "mixed-auto" / "model.int8.onnx",
                 "mixed fp32": work / "mixed-fp32" / "model.int8.onnx"}
        refs = reference_points(args, work, reports["int8"], tools)
        paths |= {name: Path(ref["record"]["artifact"]) for name, ref in refs.items()}
        timed = latencies(paths, batches, args.threads, args.rounds, args.iters)
        results[proxy] = {"walls": walls, "reports": reports, "latency": timed, "refs": refs}
        print_proxy(args, proxy, walls, reports, refs, timed, batches)
    print(f"machine: {cpu_model()}, {args.threads} threads; command: .venv/bin/python bench/bench_mixed.py "
          + " ".join(sys.argv[1:]))
    if not args.quick:
        plot(results, batches, args.target_cosine, ROOT / "bench" / "mixed_fallback.png")
    (args.work / "results.json").write_text(json.dumps(
        {p: {"walls": r["walls"], "latency": {k: {str(b): v for b, v in d.items()} for k, d in r["latency"].items()},
             "held_out": {k: held_out(v) for k, v in r["reports"].items()}
                         | {k: held_out(v["report"]) for k, v in r["refs"].items()},
             "references": {k: reference_entry(v) for k, v in r["refs"].items()},
             "mixed": {k: _mixed(v) for k, v in r["reports"].items() if v.get("mixed_precision")},
             "stages": {k: v.get("stages") for k, v in r["reports"].items()}} for p, r in results.items()}, indent=1))


def plot(results: dict, batches: list[int], target: float, path: Path) -> None:
    """Held-out cosine vs latency (x full INT8) of every artifact, one panel per batch size: a colour per artifact,
    a marker per proxy, the other tools' points hollow; FP32 (exact by definition) is left out of the log axes."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.lines import Line2D
    except ImportError:
        print("matplotlib is not installed: no picture")
        return
    names = sorted({name for result in results.values() for name in result["latency"] if name != "fp32"})
    colours = {name: plt.get_cmap("tab10")(index % 10) for index, name in enumerate(names)}
    markers = dict(zip(results, "os^D"))
    figure, axes = plt.subplots(1, len(batches), figsize=(6.5 * len(batches), 4.8), squeeze=False)
    for axis, batch in zip(axes[0], batches):
        for proxy, result in results.items():
            timed = result["latency"]
            for name, row in timed.items():
                cosine = cosine_of(name, result["reports"], result["refs"])
                if name == "fp32" or cosine is None:
                    continue
                hollow = name in result["refs"]
                axis.scatter(row[batch] / timed["int8"][batch], max(1.0 - cosine, 1e-7), marker=markers[proxy], s=48,
                             facecolors="none" if hollow else colours[name], edgecolors=colours[name], linewidths=1.5)
        axis.axhline(1.0 - target, linestyle="--", linewidth=0.8, color="grey")
        axis.axvline(1.05, linestyle=":", linewidth=0.8, color="grey")
        axis.set_yscale("log")
        axis.set_xlabel(f"latency, x full INT8 (OpenVINO, batch {batch}; dotted: 1.05x)")
        axis.set_ylabel(f"1 - held-out logits cosine vs FP32 (dashed: {target:g})")
        axis.grid(True, which="both", linewidth=0.3)
    handles = [Line2D([], [], linestyle="", marker="o", color=colours[name], label=name) for name in names]
    handles += [Line2D([], [], linestyle="", marker=markers[proxy], color="black", markerfacecolor="none",
                       label=f"{proxy} proxy") for proxy in results]
    axes[0][-1].legend(handles=handles, fontsize=8, loc="upper right")
    figure.suptitle("mixed precision as the export builds it (hollow: other tools' INT8)", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    print(f"wrote {path}")


def _mixed(report: dict) -> dict:
    section = report["mixed_precision"]
    return {"float_layers": section["float_layer_count"], "mac_share": section["float_cost_share"],
            "tuning_cosine": section["chosen"]["cosine"], "reached": section["reached"],
            "fallback_precision": section.get("fallback_precision"), "runs_in": section.get("runs_in"),
            "sensitivity_seconds": section["sensitivity"]["seconds"], "search_seconds": section.get("search_seconds"),
            "steps": len(section["steps"])}


def print_proxy(args, proxy, walls, reports, refs, timed, batches) -> None:  # type: ignore[no-untyped-def]
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{args.model}, {proxy} proxy, OpenVINO on {args.threads} threads: held-out cosine vs latency")
    for column in ("artifact", "computes in", "float layers (MACs)", "tuning cosine", "held-out cosine",
                   *[f"b{b} ms" for b in batches], *[f"b{b} x INT8" for b in batches]):
        table.add_column(column, justify="left" if column == "artifact" else "right")
    for name, row in timed.items():
        section = reports[NAMES[name]].get("mixed_precision") if name.startswith("mixed") else None
        cosine = cosine_of(name, reports, refs)
        kept = f"{section['float_layer_count']} ({section['float_cost_share']:.1%})" if section else "-"
        tuning = f"{section['chosen']['cosine']:.5f}" if section else "-"
        table.add_row(name, str(row["computes_in"]), kept, tuning, "-" if cosine is None else f"{cosine:.5f}",
                      *[f"{row[b]:.2f}" for b in batches], *[f"{row[b] / timed['int8'][b]:.3f}" for b in batches])
    Console(width=160).print(table)
    plain = walls["int8"]
    mixed = walls["mixed auto"]
    stages = reports["mixed auto"].get("stages") or {}
    print(f"  export wall: plain INT8 {plain:.1f} s, --target-cosine {args.target_cosine} {mixed:.1f} s "
          f"({mixed / plain:.2f}x; target <= 2x); sensitivity {stages.get('sensitivity') or 0:.1f} s (target <= 60 s), "
          f"search {stages.get('search') or 0:.1f} s")
    for name in ("mixed auto", "mixed fp32"):
        section = reports[name]["mixed_precision"]
        print(f"  {name}: {section['summary']}")
    if refs:
        ours = reports["int8"].get("stages") or {}
        print("  reference export walls (the tool's child process from our FP32 ONNX, calibration included): "
              + ", ".join(f"{name} {ref['record']['wall_seconds']:.1f} s" for name, ref in refs.items())
              + f"; ours: plain INT8 {plain:.1f} s in all, its calibrate + quantize stages "
              f"{(ours.get('calibration') or 0) + (ours.get('quantize') or 0):.1f} s")
        for name, ref in refs.items():
            record = ref["record"]
            versions = ", ".join(f"{k} {v}" for k, v in record["versions"].items())
            print(f"  {name}: {versions}; {record['calibration_images']} calibration images; "
                  f"held-out on {(ref['report'].get('verification') or {}).get('backend')}")


if __name__ == "__main__":
    main()
