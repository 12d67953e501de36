"""`make demo`: the whole tool offline, on CPU, in a few minutes, with a model whose weights are random.

Generates a small sample image folder, exports resnext50d_32x4d at INT8 on the embedded default
backend (ONNX Runtime), verifies it against FP32, packages it, inspects the bundle and predicts
on one image, each step through the real `resnext-deploy` CLI, then says where everything is.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

RANDOM_LINE = "NOTE: the demo uses RANDOM weights (no network): every accuracy number and prediction below is meaningless."


def run(step: str, args: list[str], ok_codes: tuple[int, ...] = (0,)) -> int:
    """Run one `resnext-deploy` command in a child process, echoing it; stop the demo on an unexpected exit code."""
    print(f"\n=== {step}\n$ resnext-deploy {' '.join(args)}", flush=True)
    start = time.perf_counter()
    code = subprocess.run([sys.executable, "-m", "resnext_deploy", *args], check=False).returncode
    print(f"--- {step}: exit {code} ({time.perf_counter() - start:.0f}s)", flush=True)
    if code not in ok_codes:
        sys.exit(f"demo stopped: `resnext-deploy {args[0]}` exited with {code}")
    return code


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("out/demo"), help="where the demo writes everything")
    parser.add_argument("--model", default="resnext50d_32x4d")
    parser.add_argument("--precision", default="int8", choices=("fp32", "fp16", "int8"))
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from resnext_deploy.data.samples import write_sample_images

    work = args.workdir
    samples, export_dir = work / "samples", work / f"{args.model}-{args.precision}"
    bundle = work / f"{args.model}-{args.precision}.tar.gz"
    print(RANDOM_LINE, flush=True)
    print(f"\n=== sample images\nwriting 64 JPEGs (8 ImageNet classes: 32 for calibration, 32 for verification) into {samples}")
    write_sample_images(samples / "train", per_class=4, seed=0)
    write_sample_images(samples / "val", per_class=4, seed=1)
    export = ["export", args.model, "--weights", "random", "--precision", args.precision, "--backend", "onnxruntime",
              "--output", str(export_dir), "--force"]
    # export ends with verification: it calibrates on samples/train and evaluates on samples/val
    export += ["--eval-data", str(samples), "--eval-size", "32", "--batch-sizes", "1,8", "--duration", "1"]
    if args.precision == "int8":
        export += ["--calib-data", str(samples), "--calib-size", "32", "--cache-dir", str(work / "cache")]
    verify = run("export and verify", export, ok_codes=(0, 1))
    run("package", ["package", str(export_dir), "--output", str(bundle), "--force"])
    run("inspect", ["inspect", str(bundle)])
    image = sorted((samples / "val").rglob("*.JPEG"))[0]
    run("predict", ["predict", str(bundle), str(image), "--top", "5"])
    print("\n=== where everything is")
    print(f"  sample images:     {samples}")
    print(f"  export directory:  {export_dir} (model.onnx, model.{args.precision}.onnx, engine, report.json, report.md)")
    print(f"  edge bundle:       {bundle}")
    print(f"  verification:      {export_dir / 'report.md'}"
          + ("" if verify == 0 else "  (some gates failed, as expected for an untrained model)"))
    print(f"\n{RANDOM_LINE}")
    print("For real results (ImageNet root holding train/ and val/; calibrates on train/, verifies on val/):\n"
          "  resnext-deploy export resnext50d_32x4d --weights pretrained --precision int8 "
          "--calib-data /path/to/imagenet --calib-size 512 --eval-size 5000")


if __name__ == "__main__":
    main()
