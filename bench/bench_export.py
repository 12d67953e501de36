"""Export of resnext50d_32x4d on this CPU: the pipeline's wall time and peak memory, and dynamo vs TorchScript.

1. Runs `resnext-deploy export ... --no-engine --no-verify` (random weights) in a child process, so
   its peak RSS is measured alone; prints the stage times from report.json. Targets: under 30 s wall
   and under 4 GiB peak on 2 cores.
2. Compares torch's two ONNX exporters side by side in this process on the proxy model
   (`proxy_model.py`, BN folded once): export and onnxsim time (first call, as a CLI run pays it,
   and best of ``--rounds`` rounds, order alternated), graph nodes and size, parity against PyTorch, and both INT8 recipes on each graph
   (Q/DQ nodes, residual Adds released for TensorRT, logits cosine vs FP32 on held-out images).

Run: ``make bench-export`` (``--quick`` for a small smoke run whose numbers mean little).
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
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from proxy_model import build_proxy, natural_images  # noqa: E402

SIZE = 224


def pipeline_run(model: str) -> None:
    """The CLI export in a child process: wall time, peak RSS and report.json's stage times."""
    with tempfile.TemporaryDirectory(prefix="bench-export.") as tmp:
        command = [sys.executable, "-m", "resnext_deploy", "export", model, "--weights", "random",
                   "--output", tmp, "--force", "--no-engine", "--no-verify"]
        env = os.environ | {"HF_HUB_OFFLINE": "1"}
        start = time.perf_counter()
        subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wall = time.perf_counter() - start
        peak_gib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20  # ru_maxrss is KiB on Linux
        report = json.loads((Path(tmp) / "report.json").read_text())
    export = report["export"]
    print(f"{model}: export + simplify + parity ({export.get('exporter', '?')} exporter), "
          f"{os.cpu_count()} cores ({report['environment']['cpu']})")
    print(f"  wall time   {wall:6.1f} s   (target < 30 s)   {'ok' if wall < 30 else 'MISSED'}")
    print(f"  peak memory {peak_gib:6.2f} GiB (target < 4 GiB) {'ok' if peak_gib < 4 else 'MISSED'}")
    print("  stages      " + ", ".join(f"{k} {v:.1f}s" for k, v in export["seconds"].items())
          + " (the rest is Python start-up, torch/timm import and model construction)")
    print(f"  graph       {export['simplify']['nodes_before']} -> {export['simplify']['nodes_after']} nodes, "
          f"{export['batchnorm']['folded']} BatchNorms folded, parity max abs diff {export['parity']['max_abs_diff']:.1e}")


@dataclass
class ExporterFigures:
    """What one exporter produced, for the comparison table."""

    export_s: list[float] = field(default_factory=list)
    simplify_s: list[float] = field(default_factory=list)
    row: dict[str, str] = field(default_factory=dict)


def compare_exporters(rounds: int, calib_size: int, heldout: int, bn_images: int) -> dict[str, ExporterFigures]:
    """Export the proxy with each exporter ``rounds`` times, then check and quantize the last graph of each."""
    import onnx
    import torch

    from resnext_deploy.environment import usable_cores
    from resnext_deploy.exporters.fold import fold_batchnorm
    from resnext_deploy.exporters.onnx_export import EXPORTERS, export_to_onnx, op_counts, resolve_opset, simplify
    from resnext_deploy.exporters.parity import check_parity

    images = natural_images(bn_images + calib_size + heldout, SIZE, seed=0)
    bn, calib, held = np.split(images, [bn_images, bn_images + calib_size])
    model = build_proxy(bn)
    folded = fold_batchnorm(model).model
    torch.set_num_threads(usable_cores())
    figures = {name: ExporterFigures() for name in EXPORTERS}
    graphs: dict[str, onnx.ModelProto] = {}
    for index in range(rounds):
        order = EXPORTERS if index % 2 == 0 else tuple(reversed(EXPORTERS))
        for name in order:
            start = time.perf_counter()
            proto = export_to_onnx(folded, SIZE, exporter=name)
            figures[name].export_s.append(time.perf_counter() - start)
            start = time.perf_counter()
            graphs[name], simplified = simplify(proto, SIZE)
            figures[name].simplify_s.append(time.perf_counter() - start)
            figures[name].row["nodes"] = f"{simplified.nodes_before} -> {simplified.nodes_after}"
    with tempfile.TemporaryDirectory(prefix="bench-export-cmp.") as tmp:
        for name, proto in graphs.items():
            path = Path(tmp) / f"{name}.onnx"
            onnx.save(proto, str(path))
            parity = check_parity(model, str(path), SIZE, batch_sizes=(1, 8))
            ops = op_counts(proto)
            row = figures[name].row
            row["opset"] = str(resolve_opset(name, None))
            row["MB"] = f"{path.stat().st_size / 1e6:.1f}"
            row["ops"] = ", ".join(f"{op} {n}" for op, n in ops.items() if op not in ("Conv", "Relu"))
            row["parity max|diff| / cos"] = f"{parity.max_abs_diff:.1e} / {parity.min_cosine:.7f}"
            row.update(_int8_figures(path, calib, held, Path(tmp) / f"cache-{name}"))
    return figures


def _int8_figures(fp32: Path, calib: np.ndarray, held: np.ndarray, cache: Path) -> dict[str, str]:
    """Both recipes on one FP32 graph: Q/DQ nodes, Adds released for TensorRT, cosine vs FP32 (ORT CPU)."""
    from resnext_deploy.calibration.quantize import QuantizeConfig, quantize_int8
    from resnext_deploy.exporters.parity import ort_session
    from resnext_deploy.numerics import mean_cosine

    reference = ort_session(str(fp32)).run(None, {"input": held})[0]
    row = {}
    for recipe in ("onnxruntime", "tensorrt"):
        out = fp32.with_name(f"{fp32.stem}.{recipe}.int8.onnx")
        result = quantize_int8(fp32, out, calib, QuantizeConfig(manifest_sha256="bench-export", method="minmax", recipe=recipe, cache_dir=cache, progress=False))
        got = ort_session(str(out)).run(None, {"input": held})[0]
        released = f", {result.residual_adds_released} Adds released" if recipe == "tensorrt" else ""
        row[f"int8 {recipe}"] = f"Q/DQ {result.quantize_linear_nodes}/{result.dequantize_linear_nodes}{released}, " \
                                f"cos {mean_cosine(reference, got):.5f}"
    return row


def print_comparison(figures: dict[str, ExporterFigures], rounds: int) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"resnext50d_32x4d proxy (see proxy_model.py), dynamo vs TorchScript exporter, {rounds} round(s) "
                        f"(a CLI export pays the first), {os.cpu_count()} cores")
    columns = ["exporter", "export s first/best", "onnxsim s first/best", "opset", "nodes", "MB", "ops",
               "parity max|diff| / cos", "int8 onnxruntime", "int8 tensorrt"]
    for column in columns:
        table.add_column(column)
    for name, fig in figures.items():
        table.add_row(name, f"{fig.export_s[0]:.1f} / {min(fig.export_s):.1f}",
                      f"{fig.simplify_s[0]:.1f} / {min(fig.simplify_s):.1f}",
                      *(fig.row.get(column, "-") for column in columns[3:]))
    Console(width=220).print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnext50d_32x4d", help="model of the pipeline run")
    parser.add_argument("--rounds", type=int, default=2, help="exports per exporter (the first pays one-time set-up)")
    parser.add_argument("--calib-size", type=int, default=64)
    parser.add_argument("--heldout", type=int, default=32)
    parser.add_argument("--bn-images", type=int, default=128)
    parser.add_argument("--skip-pipeline", action="store_true", help="only the exporter comparison")
    parser.add_argument("--skip-compare", action="store_true", help="only the pipeline run")
    parser.add_argument("--quick", action="store_true", help="small smoke run (numbers not meaningful)")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.calib_size, args.heldout, args.bn_images = 1, 8, 4, 16
    if not args.skip_pipeline:
        pipeline_run(args.model)
    if not args.skip_compare:
        print_comparison(compare_exporters(args.rounds, args.calib_size, args.heldout, args.bn_images), args.rounds)


if __name__ == "__main__":
    main()
