"""Helper of scripts/gpu_check.sh: preflight, proxy weights, engine layer precisions, trtexec and pytest outcomes,
the summary table.

    python scripts/gpu_check_helper.py preflight [--engine tensorrt|onnxruntime]
    python scripts/gpu_check_helper.py proxy-weights MODEL FILE     # bench/proxy_model.py weights as a checkpoint
    python scripts/gpu_check_helper.py layers ENGINE [--json FILE] [--expect fp16|int8]
    python scripts/gpu_check_helper.py shape ENGINE BATCH           # trtexec --shapes value, e.g. input:8x3x224x224
    python scripts/gpu_check_helper.py trtexec-median LOG           # GPU compute median (ms) from a trtexec log
    python scripts/gpu_check_helper.py trtexec-version TRTEXEC      # exit 1 when it is not tensorrt.__version__'s
    python scripts/gpu_check_helper.py pytest-outcome JUNIT_XML [--skipped-file FILE]
    python scripts/gpu_check_helper.py summary OUT_DIR [--engine E] # the table of every step, also OUT_DIR/summary.md

Every subcommand prints plain lines and exits 0 when it did its job (2 when the engine is unavailable
for ``preflight``, 1 when ``--expect`` finds the engine's convolutions in the wrong precision, 1 when
trtexec belongs to another TensorRT version).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

PRECISIONS = ("fp32", "fp16", "int8")
ENGINES = {"tensorrt": "TensorRT", "onnxruntime": "ONNX Runtime"}
ROOT = Path(__file__).resolve().parents[1]
PROXY_BN_IMAGES = 64


def preflight(engine: str = "tensorrt") -> int:
    """Say whether ``engine`` can run here (``ENGINE: what runs``), or exactly what is missing."""
    from resnext_deploy.engines.registry import get_spec

    backend = get_spec(engine).backend()
    availability = getattr(backend, "availability", None)
    ok, reason, hint = availability() if availability is not None else (*backend.available(), "")
    print(f"{engine}: {reason}" if ok else f"unavailable: {reason}" + (f" ({hint})" if hint else ""))
    return 0 if ok else 2


def proxy_weights(model: str, path: Path, seed: int = 0) -> int:
    """Write ``model``'s benchmark proxy (random weights, residual branches carrying signal, BN re-estimated on
    natural-image statistics) as a state-dict checkpoint for ``--weights``."""
    import torch

    sys.path.insert(0, str(ROOT))  # bench/ and tests/support/ of this repository
    from bench.proxy_model import build_proxy, natural_images
    from resnext_deploy.files import atomic_path
    from resnext_deploy.zoo import get_model_spec

    spec = get_model_spec(model)
    images = natural_images(PROXY_BN_IMAGES, spec.preprocess.input_size, seed=seed)
    proxy = build_proxy(images, seed=seed, model_name=spec.timm_name, num_classes=spec.num_classes, **spec.timm_kwargs)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        torch.save(proxy.state_dict(), tmp)
    print(f"{model}: benchmark-proxy weights (residual branches scaled, BatchNorm re-estimated on "
          f"{PROXY_BN_IMAGES} natural-statistics images) -> {path}")
    return 0


def _sidecar(engine: Path) -> dict[str, Any]:
    return json.loads(engine.with_name(engine.name + ".json").read_text())


def layers(engine: Path, json_out: Path | None, expect: str | None) -> int:
    """Per-layer precisions from TensorRT's engine inspector; which convolutions really run INT8 (or FP16)."""
    from resnext_deploy.engines.tensorrt.layers import inspect_engine, precision_problem, summarize

    allow_host_code = bool(_sidecar(engine).get("options", {}).get("version_compatible"))
    found = inspect_engine(engine, allow_host_code)
    summary = summarize(found)
    print(f"{engine.name}: {summary['layers']} layers; convolutions by precision {summary['convolutions']} "
          f"(dense {summary['dense_convolutions']}, grouped {summary['grouped_convolutions']})")
    for line in summary["not_int8"][:40] if expect == "int8" else []:
        print(f"  not INT8: {line}")
    if json_out is not None:
        json_out.write_text(json.dumps({"summary": summary, "layers": [vars(layer) for layer in found]}, indent=1, default=list))
    problem = precision_problem(summary, expect) if expect else None
    if problem:
        print(f"{engine.name}: {problem}")
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


_TRTEXEC_BANNER = re.compile(r"TensorRT(?:\.trtexec)?\s*\[TensorRT v(\d+)\]")


def trtexec_version(banner: str) -> str | None:
    """``[TensorRT v101300]`` (trtexec's first line) -> ``10.13.0``; None when the text has no banner."""
    match = _TRTEXEC_BANNER.search(banner)
    if match is None:
        return None
    number = int(match.group(1))
    return f"{number // 10000}.{number // 100 % 100}.{number % 100}"


def trtexec_mismatch(banner: str, tensorrt_version: str) -> str | None:
    """Why this trtexec cannot load our engines (another TensorRT version), or None when it can."""
    found = trtexec_version(banner)
    if found is None:
        return "trtexec printed no TensorRT version banner: its engines may not be ours to compare"
    if found.split(".")[:3] != tensorrt_version.split(".")[:3]:
        return (f"trtexec is TensorRT {found}, the engines were built by TensorRT {tensorrt_version}: "
                f"it cannot load them (put the trtexec of TensorRT {tensorrt_version} on PATH)")
    return None


def check_trtexec(trtexec: str) -> int:
    """Exit 0 when ``trtexec`` belongs to the installed TensorRT (printing both versions), else 1 saying why."""
    import subprocess

    import tensorrt

    run = subprocess.run([trtexec, "--help"], capture_output=True, text=True, timeout=60)
    problem = trtexec_mismatch(run.stdout + run.stderr, tensorrt.__version__)
    print(problem or f"trtexec {trtexec_version(run.stdout + run.stderr)} = tensorrt {tensorrt.__version__}")
    return 1 if problem else 0


def pytest_outcome(junit: Path) -> tuple[str, str | None]:
    """(counts, why everything was skipped or None) from a pytest JUnit XML file."""
    import xml.etree.ElementTree as ET

    suites = ET.parse(junit).getroot()
    suites = [suites] if suites.tag == "testsuite" else list(suites.iter("testsuite"))
    counts = {key: sum(int(suite.get(key, 0)) for suite in suites) for key in ("tests", "skipped", "failures", "errors")}
    text = f"{counts['tests']} tests: {counts['skipped']} skipped, {counts['failures']} failed, {counts['errors']} errors"
    if counts["tests"] == 0:
        return text, "no test was collected"
    if counts["skipped"] == counts["tests"]:
        reasons = [node.get("message", "") for node in suites[0].iter("skipped")] if suites else []
        reason = next((r for r in reasons if r), "no reason given")
        return text, f"all {counts['tests']} tests skipped: {reason}"
    return text, None


def _steps(out: Path) -> list[list[str]]:
    path = out / "steps.tsv"
    return [line.split("\t") for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _precision_rows(out: Path, engine_name: str = "tensorrt") -> list[str]:
    rows = []
    for precision in PRECISIONS:
        report_path = out / precision / "report.json"
        if not report_path.is_file():
            continue
        report = json.loads(report_path.read_text())
        if (report.get("engine") or {}).get("backend") != engine_name:
            continue  # an artifact made without this engine (no GPU here): nothing to compare yet
        ver = report.get("verification") or {}
        acc, lat = ver.get("accuracy") or {}, (ver.get("latency") or {}).get("per_batch") or {}
        engine = (report.get("engine") or {}).get("artifact", {}).get("metadata", {})
        version = engine.get("tensorrt_version") or engine.get("onnxruntime_version") or "-"
        baseline = ver.get("baseline") or {}
        provider = ",".join(baseline.get("providers") or []) or baseline.get("backend") or "-"
        layers_path = out / precision / "layers.json"
        convs = json.loads(layers_path.read_text())["summary"]["convolutions"] if layers_path.is_file() else {}

        def p50(batch: str, side: str) -> str:
            row = lat.get(batch) or {}
            return "skipped" if "skipped" in row else _fmt((row.get(side) or {}).get("p50_ms"), 2)

        trtexec = [trtexec_median(out / f"trtexec-{precision}-b{b}.log") for b in (1, 8)]
        rows.append(
            f"| {precision} | {version} | {engine.get('tf32', '-')} | {provider} | "
            f"{_fmt(acc.get('mean_cosine'), 6)} | {_fmt(acc.get('top1_agreement'))} | "
            f"{p50('1', 'baseline')} / {p50('8', 'baseline')} | {p50('1', 'target')} / {p50('8', 'target')} | "
            f"{_fmt(trtexec[0], 3)} / {_fmt(trtexec[1], 3)} | {convs or '-'} |"
        )
    return rows


def summary(out: Path, engine_name: str = "tensorrt") -> int:
    """Print (and write to OUT/summary.md) the status of every step and the figures of every engine."""
    title = ENGINES[engine_name]
    lines = [f"## GPU check (--engine {engine_name})", "", "| step | status | seconds | note |", "|---|---|---|---|"]
    lines += [f"| {' | '.join(cells + [''] * (4 - len(cells)))} |" for cells in _steps(out)]
    rows = _precision_rows(out, engine_name)
    if rows:
        lines += [
            "", f"| engine | {title} | TF32 | baseline provider | logits cosine vs ORT FP32 | top-1 agreement | "
            f"ORT p50 ms b1 / b8 | {title} p50 ms b1 / b8 (end-to-end, host buffers) | "
            "trtexec GPU compute median ms b1 / b8 | convolutions by precision |",
            "|---|---|---|---|---|---|---|---|---|---|", *rows,
            "", ("TensorRT p50 includes host-to-device and device-to-host copies and synchronization; trtexec's GPU "
                 "compute time does not. " if engine_name == "tensorrt" else "")
            + "Weights are proxies (random, residual branches scaled) unless WEIGHTS named a checkpoint: cosine and "
            "agreement are parity figures, not accuracy.",
        ]
    text = "\n".join(lines) + "\n"
    print(text)
    (out / "summary.md").write_text(text)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    pre = sub.add_parser("preflight")
    pre.add_argument("--engine", choices=tuple(ENGINES), default="tensorrt")
    proxy = sub.add_parser("proxy-weights")
    proxy.add_argument("model")
    proxy.add_argument("path", type=Path)
    layer = sub.add_parser("layers")
    layer.add_argument("engine", type=Path)
    layer.add_argument("--json", type=Path, default=None)
    layer.add_argument("--expect", choices=("fp16", "int8"), default=None)
    shaped = sub.add_parser("shape")
    shaped.add_argument("engine", type=Path)
    shaped.add_argument("batch", type=int)
    median = sub.add_parser("trtexec-median")
    median.add_argument("log", type=Path)
    version = sub.add_parser("trtexec-version")
    version.add_argument("trtexec")
    outcome = sub.add_parser("pytest-outcome")
    outcome.add_argument("junit", type=Path)
    outcome.add_argument("--skipped-file", type=Path, default=None)
    summarized = sub.add_parser("summary")
    summarized.add_argument("out", type=Path)
    summarized.add_argument("--engine", choices=tuple(ENGINES), default="tensorrt")
    args = parser.parse_args(argv)
    if args.command == "preflight":
        return preflight(args.engine)
    if args.command == "proxy-weights":
        return proxy_weights(args.model, args.path)
    if args.command == "layers":
        return layers(args.engine, args.json, args.expect)
    if args.command == "trtexec-version":
        return check_trtexec(args.trtexec)
    if args.command == "pytest-outcome":
        counts, skipped = pytest_outcome(args.junit)
        print(counts if skipped is None else f"{counts}; {skipped}")
        if skipped is not None and args.skipped_file is not None:
            args.skipped_file.write_text(skipped + "\n")
        return 0
    if args.command == "shape":
        return shape(args.engine, args.batch)
    if args.command == "trtexec-median":
        value = trtexec_median(args.log)
        print("-" if value is None else value)
        return 0
    return summary(args.out, args.engine)


if __name__ == "__main__":
    sys.exit(main())
