"""bench_mixed.py's reference points: NNCF's and ModelOpt's INT8 Q/DQ ONNX from our FP32 export, verified by us.

Each tool runs in a child process with the python of its own venv (``make bench-refs`` makes them:
``bench/reference_venvs.sh``) on ``bench/reference_quantizers.py``. Shared with our INT8 export:

* the FP32 model: ``<proxy>/int8/model.onnx``, the export's own FP32 ONNX;
* the calibration images: the files listed in ``<proxy>/int8/calibration/manifest.json`` (checked by sha256),
  decoded with the project's preprocessing (the INT8 artifact's ``preprocess`` metadata, ``iter_batches``, as
  the export's calibration decodes them) into one ``.npy`` that every tool reads;
* the held-out images and the FP32 reference: ``resnext-deploy verify`` on the bare artifact with the export's
  evaluation settings (same image root, subset size and seed: the same files; the same backend, threads and
  baseline cache, so the FP32 logits are those the export's verify compared with).

A tool whose venv is missing or whose run fails prints one line saying why and is left out; nothing is made up.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from reference_quantizers import TOOLS  # the tools the child script takes (it imports only the standard library here)

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "bench" / "reference_quantizers.py"
VENVS = ROOT / "out" / "bench-venvs"
TIMEOUT_S = 3 * 3600


def row_name(tool: str) -> str:
    """The artifact's name in the table, the plot and results.json."""
    return f"{tool} int8"


def parse_tools(text: str) -> list[str]:
    """``nncf,modelopt`` -> the tools; '' or 'none' -> none; an unknown name exits."""
    tools = [t.strip() for t in text.split(",") if t.strip() and t.strip() != "none"]
    unknown = sorted(set(tools) - set(TOOLS))
    if unknown:
        sys.exit(f"--references: unknown tool(s) {', '.join(unknown)} (known: {', '.join(TOOLS)}, none)")
    return tools


def venv_python(tool: str, venvs: Path = VENVS) -> Path | None:
    """The python of the tool's venv when it is ready (``.ready`` written last by reference_venvs.sh)."""
    python = venvs / tool / "bin" / "python"
    return python if python.is_file() and (venvs / tool / ".ready").is_file() else None


def pinned_versions(tool: str, venvs: Path = VENVS) -> dict[str, str]:
    """The tool's and ONNX Runtime's versions in its venv, from the ``pip freeze`` in ``.ready``."""
    wanted = {"nncf", "nvidia-modelopt", "onnx", "onnxruntime", "onnxruntime-gpu", "torch"}
    lines = (venvs / tool / ".ready").read_text().splitlines()
    pairs = (line.split("==", 1) for line in lines if "==" in line)
    return {name.lower(): version for name, version in pairs if name.lower() in wanted}


def calibration_array(int8_dir: Path, path: Path) -> tuple[Path, int, float]:
    """The INT8 export's calibration images, decoded as its calibration decodes them, saved to ``path``.

    Returns (path, images, seconds). Kept when already there (``--reuse``).
    """
    if path.is_file():
        return path, len(np.load(path, mmap_mode="r")), 0.0
    from resnext_deploy.data.manifest import Manifest
    from resnext_deploy.data.preprocess import iter_batches
    from resnext_deploy.layout import CALIBRATION_MANIFEST, artifact_name
    from resnext_deploy.metadata import read_metadata
    from resnext_deploy.zoo import PreprocessConfig

    started = time.perf_counter()
    manifest = Manifest.read(int8_dir / CALIBRATION_MANIFEST)
    cfg = PreprocessConfig.from_dict(read_metadata(int8_dir / artifact_name("int8"))["preprocess"])
    batches = [loaded.array for loaded in iter_batches(manifest.resolve(manifest.root), cfg, 32, progress=False)]
    images = np.ascontiguousarray(np.concatenate(batches), dtype=np.float32)
    if len(images) != len(manifest.entries):
        sys.exit(f"reference points: {len(manifest.entries) - len(images)} calibration images could not be decoded")
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, images)
    return path, len(images), time.perf_counter() - started


def quantize(tool: str, fp32: Path, calibration: Path, folder: Path, venvs: Path = VENVS) -> dict[str, Any] | None:
    """Run the tool in its venv; its record with ``wall_seconds`` (the child's wall, calibration included), or None."""
    python = venv_python(tool, venvs)
    if python is None:
        print(f"  {row_name(tool)}: left out: no ready venv in {venvs / tool} (run `make bench-refs`)")
        return None
    folder.mkdir(parents=True, exist_ok=True)
    output = folder / f"model.{tool}.int8.onnx"
    command = [str(python), str(SCRIPT), tool, "--fp32", str(fp32), "--calibration", str(calibration),
               "--output", str(output), "--scratch", str(folder / "scratch")]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    for stale in (output, output.with_suffix(".json")):
        stale.unlink(missing_ok=True)
    started = time.perf_counter()
    with open(folder / "quantize.log", "w") as log:
        try:
            done = subprocess.run(command, env=env, stdout=log, stderr=subprocess.STDOUT, timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            print(f"  {row_name(tool)}: left out: quantization ran past {TIMEOUT_S} s")
            return None
    wall = time.perf_counter() - started
    if done.returncode != 0:
        lines = (folder / "quantize.log").read_text().strip().splitlines() or ["(no output)"]
        reason = next((line for line in reversed(lines) if line.startswith("reference ")), lines[-1])
        print(f"  {row_name(tool)}: left out: exit {done.returncode}: {reason} (log: {folder / 'quantize.log'})")
        return None
    record = json.loads(output.with_suffix(".json").read_text())
    return record | {"wall_seconds": wall, "versions": pinned_versions(tool, venvs), "artifact": str(output)}


def verify(args: Any, artifact: Path, fp32: Path, export_report: dict, cache: Path, output: Path) -> dict | None:
    """``resnext-deploy verify`` on the bare artifact with the INT8 export's evaluation settings; its report.json."""
    ver = export_report.get("verification") or {}
    command = [sys.executable, "-m", "resnext_deploy", "verify", str(artifact), "--reference", str(fp32),
               "--model", args.model, "--eval-data", str(args.data), "--eval-size", str(args.eval_size),
               "--cache-dir", str(cache), "--threads", str(args.threads), "--no-latency", "--output", str(output)]
    if ver.get("backend"):
        command += ["--backend", str(ver["backend"])]
    done = subprocess.run(command, env=os.environ | {"HF_HUB_OFFLINE": "1"}, capture_output=True, text=True)
    if done.returncode not in (0, 1) or not (output / "report.json").is_file():
        last = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        print(f"  {artifact.name}: verify failed ({done.returncode}): {last}")
        return None
    report = json.loads((output / "report.json").read_text())
    mine, theirs = (report.get("verification") or {}).get("eval_data") or {}, ver.get("eval_data") or {}
    keys = ("root", "split", "requested", "seed", "count")
    if any(mine.get(k) != theirs.get(k) for k in keys):
        print(f"  {artifact.name}: held-out images differ from the INT8 export's: "
              f"{ {k: mine.get(k) for k in keys} } vs { {k: theirs.get(k) for k in keys} }")
    return report


def reference_points(args: Any, work: Path, export_report: dict, tools: list[str], venvs: Path = VENVS) -> dict[str, dict]:
    """Quantize (or, under ``--reuse``, reload when an earlier run made it) and verify each tool's artifact of
    ``work``'s proxy.

    Returns {row name: {"record": the quantizer's record, "report": verify's report.json}} for the tools that worked.
    """
    refs: dict[str, dict] = {}
    if not tools:
        return refs
    fp32 = work / "int8" / "model.onnx"
    calibration = work / "refs" / "calibration.npy"
    if not args.reuse:  # this run's INT8 export may have calibrated on other images than an earlier run's
        calibration.unlink(missing_ok=True)
    for tool in tools:
        folder = work / "refs" / tool
        record = _reload(folder) if args.reuse else None
        fresh = record is None
        if fresh:
            if not calibration.is_file():  # decoded once, for every tool quantized in this run
                _, count, seconds = calibration_array(work / "int8", calibration)
                print(f"  reference points: {count} calibration images of the INT8 export decoded in {seconds:.1f} s "
                      f"-> {calibration}")
            record = quantize(tool, fp32, calibration, folder, venvs)
            if record is not None:
                (folder / "record.json").write_text(json.dumps(record, indent=1))
        if record is None:
            continue
        earlier = folder / "verify" / "report.json"
        report = (json.loads(earlier.read_text()) if not fresh and earlier.is_file() else
                  verify(args, Path(record["artifact"]), fp32, export_report, work / "cache-plain", folder / "verify"))
        if report is not None:
            refs[row_name(tool)] = {"record": record, "report": report}
    return refs


def _reload(folder: Path) -> dict | None:
    """An earlier run's record (``--reuse``) whose artifact is still there, else None (it is made again)."""
    path = folder / "record.json"
    if not path.is_file():
        return None
    record = json.loads(path.read_text())
    return record if Path(record["artifact"]).is_file() else None


