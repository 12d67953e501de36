"""Helper of scripts/gpu_check.sh: TensorRT preflight, engine layer precisions, trtexec parsing, the summary table.

    python scripts/gpu_check_helper.py preflight
    python scripts/gpu_check_helper.py layers ENGINE [--json FILE] [--expect-int8]
    python scripts/gpu_check_helper.py shape ENGINE BATCH           # trtexec --shapes value, e.g. input:8x3x224x224
    python scripts/gpu_check_helper.py trtexec-median LOG           # GPU compute median (ms) from a trtexec log
    python scripts/gpu_check_helper.py summary OUT_DIR              # the table of every step, also OUT_DIR/summary.md

Every subcommand prints plain lines and exits 0 when it did its job (2 when TensorRT is unavailable
for ``preflight``, 1 when ``--expect-int8`` finds no INT8 convolution).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

PRECISIONS = ("fp32", "fp16", "int8")


def preflight() -> int:
    """Say whether the TensorRT backend can run here, or exactly what is missing."""
    from resnext_deploy.engines.tensorrt import TensorRTBackend

    ok, reason, hint = TensorRTBackend().availability()
    print(f"tensorrt: {reason}" if ok else f"unavailable: {reason}" + (f" ({hint})" if hint else ""))
    return 0 if ok else 2


def _sidecar(engine: Path) -> dict[str, Any]:
    return json.loads(engine.with_name(engine.name + ".json").read_text())


def layers(engine: Path, json_out: Path | None, expect_int8: bool) -> int:
    """Per-layer precisions from TensorRT's engine inspector; which convolutions really run INT8."""
    from resnext_deploy.engines.tensorrt.layers import inspect_engine, summarize

    allow_host_code = bool(_sidecar(engine).get("options", {}).get("version_compatible"))
    found = inspect_engine(engine, allow_host_code)
    summary = summarize(found)
    print(f"{engine.name}: {summary['layers']} layers; convolutions by precision {summary['convolutions']} "
          f"(dense {summary['dense_convolutions']}, grouped {summary['grouped_convolutions']})")
    for line in summary["not_int8"][:40]:
        print(f"  not INT8: {line}")
    if json_out is not None:
        json_out.write_text(json.dumps({"summary": summary, "layers": [vars(layer) for layer in found]}, indent=1, default=list))
    if expect_int8 and not summary["dense_convolutions"].get("INT8"):
        print("no dense convolution runs INT8: the Q/DQ placement did not reach TensorRT's INT8 kernels")
        return 1
    return 0


def shape(engine: Path, batch: int) -> int:
    """``input:8x3x224x224`` for trtexec's --shapes, from the engine's sidecar."""
    spec = _sidecar(engine)["inputs"][0]
    dims = [batch, *spec["shape"][1:]]
    print(f"{spec['name']}:{'x'.join(str(d) for d in dims)}")
    return 0


_GPU_COMPUTE = re.compile(r"GPU Compute Time:.*?median = ([0-9.]+) ms")


def trtexec_median(log: Path) -> float | None:
    """The median GPU compute time trtexec printed, in ms."""
    match = _GPU_COMPUTE.search(log.read_text(errors="replace")) if log.is_file() else None
    return float(match.group(1)) if match else None


def _steps(out: Path) -> list[list[str]]:
    path = out / "steps.tsv"
    return [line.split("\t") for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _precision_rows(out: Path) -> list[str]:
    rows = []
    for precision in PRECISIONS:
        report_path = out / precision / "report.json"
        if not report_path.is_file():
            continue
        report = json.loads(report_path.read_text())
        if (report.get("engine") or {}).get("backend") != "tensorrt":
            continue  # an artifact made without TensorRT (no GPU here): nothing to compare yet
        ver = report.get("verification") or {}
        acc, lat = ver.get("accuracy") or {}, (ver.get("latency") or {}).get("per_batch") or {}
        engine = (report.get("engine") or {}).get("artifact", {}).get("metadata", {})
        layers_path = out / precision / "layers.json"
        convs = json.loads(layers_path.read_text())["summary"]["convolutions"] if layers_path.is_file() else {}

        def p50(batch: str, side: str) -> str:
            row = lat.get(batch) or {}
            return "skipped" if "skipped" in row else _fmt((row.get(side) or {}).get("p50_ms"), 2)

        trtexec = [trtexec_median(out / f"trtexec-{precision}-b{b}.log") for b in (1, 8)]
        rows.append(
            f"| {precision} | {engine.get('tensorrt_version', '-')} | {engine.get('tf32', '-')} | "
            f"{_fmt(acc.get('mean_cosine'), 6)} | {_fmt(acc.get('top1_agreement'))} | "
            f"{p50('1', 'baseline')} / {p50('8', 'baseline')} | {p50('1', 'target')} / {p50('8', 'target')} | "
            f"{_fmt(trtexec[0], 3)} / {_fmt(trtexec[1], 3)} | {convs or '-'} |"
        )
    return rows


def summary(out: Path) -> int:
    """Print (and write to OUT/summary.md) the status of every step and the figures of every engine."""
    lines = ["## GPU check", "", "| step | status | seconds | note |", "|---|---|---|---|"]
    lines += [f"| {' | '.join(cells + [''] * (4 - len(cells)))} |" for cells in _steps(out)]
    rows = _precision_rows(out)
    if rows:
        lines += [
            "", "| engine | TensorRT | TF32 | logits cosine vs ORT FP32 | top-1 agreement | ORT p50 ms b1 / b8 | "
            "TensorRT p50 ms b1 / b8 (end-to-end, host buffers) | trtexec GPU compute median ms b1 / b8 | convolutions by precision |",
            "|---|---|---|---|---|---|---|---|---|", *rows,
            "", "TensorRT p50 includes host-to-device and device-to-host copies and synchronization; trtexec's GPU compute "
            "time does not. Weights are random: cosine and agreement are parity figures, not accuracy.",
        ]
    text = "\n".join(lines) + "\n"
    print(text)
    (out / "summary.md").write_text(text)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("preflight")
    layer = sub.add_parser("layers")
    layer.add_argument("engine", type=Path)
    layer.add_argument("--json", type=Path, default=None)
    layer.add_argument("--expect-int8", action="store_true")
    shaped = sub.add_parser("shape")
    shaped.add_argument("engine", type=Path)
    shaped.add_argument("batch", type=int)
    median = sub.add_parser("trtexec-median")
    median.add_argument("log", type=Path)
    summarized = sub.add_parser("summary")
    summarized.add_argument("out", type=Path)
    args = parser.parse_args(argv)
    if args.command == "preflight":
        return preflight()
    if args.command == "layers":
        return layers(args.engine, args.json, args.expect_int8)
    if args.command == "shape":
        return shape(args.engine, args.batch)
    if args.command == "trtexec-median":
        value = trtexec_median(args.log)
        print("-" if value is None else value)
        return 0
    return summary(args.out)


if __name__ == "__main__":
    sys.exit(main())
