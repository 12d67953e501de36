"""The default INT8 job end to end: `export resnext50d_32x4d --precision int8`, 512 calibration and 500 evaluation images.

Generates an ImageNet-layout folder (train/ and val/, natural-looking JPEGs from resnext_deploy.data.samples),
runs the CLI with its defaults in a child process with a cold statistics cache, and prints the wall time,
the child's peak RSS and the stage times from report.json (``stages``: model, fold, export, simplify, parity,
calibration, quantize, sensitivity, search, engine build, baseline, target, decode, latency). Target: under
3 minutes on 2 cores. ``--target-cosine 0.999`` runs the mixed-precision export instead.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnext50d_32x4d")
    parser.add_argument("--precision", default="int8")
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--calib-size", type=int, default=512)
    parser.add_argument("--eval-size", type=int, default=500)
    parser.add_argument("--target-cosine", type=float, default=None,
                        help="a mixed-precision export (compare its wall time and stages with the plain one)")
    args = parser.parse_args()
    from resnext_deploy.data.samples import write_sample_images
    from resnext_deploy.environment import cpu_model

    with tempfile.TemporaryDirectory(prefix="bench-e2e.") as tmp:
        root = Path(tmp) / "imagenet"
        tuning = 128 if args.target_cosine is not None else 0  # --tune-size's default: held out beside the subset
        write_sample_images(root / "train", classes=64, per_class=-(-(args.calib_size + tuning) // 64), seed=0)
        write_sample_images(root / "val", classes=50, per_class=-(-args.eval_size // 50), seed=1)
        out = Path(tmp) / "out"
        command = [sys.executable, "-m", "resnext_deploy", "export", args.model, "--weights", "random",
                   "--precision", args.precision, "--backend", args.backend, "--calib-data", str(root),
                   "--calib-size", str(args.calib_size), "--eval-size", str(args.eval_size),
                   "--cache-dir", str(Path(tmp) / "cache"), "--output", str(out)]
        if args.target_cosine is not None:
            command += ["--target-cosine", str(args.target_cosine)]
        start = time.perf_counter()
        done = subprocess.run(command, env=os.environ | {"HF_HUB_OFFLINE": "1"}, capture_output=True, text=True)
        wall = time.perf_counter() - start
        peak_gib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20
        if done.returncode not in (0, 1):
            sys.exit(f"export failed ({done.returncode}):\n{done.stderr[-3000:]}")
        report = json.loads((out / "report.json").read_text())
    latency = (report.get("verification") or {}).get("latency") or {}
    print(f"{args.model} {args.precision} export end to end on {os.cpu_count()} cores ({cpu_model()})")
    print(f"  command     resnext-deploy export {args.model} --precision {args.precision} --calib-data ROOT "
          f"(defaults: {args.calib_size} calibration, {args.eval_size} evaluation images, cold cache)")
    print(f"  wall time   {wall:6.1f} s   (target < 180 s)  {'ok' if wall < 180 else 'MISSED'}")
    print(f"  peak memory {peak_gib:6.2f} GiB (target < 4 GiB) {'ok' if peak_gib < 4 else 'MISSED'}")
    print(f"  engine      {report.get('engine', {}).get('backend')}; exit code {done.returncode}")
    stages = {name: value for name, value in (report.get("stages") or {}).items() if value is not None}
    print("  stages      " + ", ".join(f"{name} {value:.1f}s" for name, value in stages.items()))
    print(f"              sum {sum(stages.values()):.1f} s of {wall:.1f} s wall (the rest: start-up, imports, "
          "manifest and file checks, reports)")
    quant = report.get("quantization") or {}
    if "calibration_seconds" in quant:
        print(f"  calibration {quant['calibration_seconds']:.1f} s ({report['calibration']['size']} images)")
    for batch, row in (latency.get("per_batch") or {}).items():
        if "target" in row:
            print(f"  batch {batch:>3}   baseline p50 {row['baseline']['p50_ms']:.1f} ms, target p50 "
                  f"{row['target']['p50_ms']:.1f} ms ({row['target']['iterations']} runs)")


if __name__ == "__main__":
    main()
