"""Sweep benchmark: the same small sweep on the local pool (1 and 2 workers) and on a local Ray instance.

resnext50d_32x4d and tv_resnext50_32x4d x fp32/fp16/int8 x ONNX Runtime, evaluated on 256 generated
real-size JPEGs (500x375). Prints the wall time of each run, evaluation throughput (decoding and
inference images/s per worker, and all shards together), the FP32 export reuse, and checks that
every accuracy number is identical in every run (exit 1 when not).

Weights are random (no download here), drawn once with a fixed seed and saved, so every run exports
the same network: the accuracy numbers mean nothing, their equality does.
With ``--cluster-nodes 1,2`` the sweep also runs on a Ray cluster of that many nodes of one CPU each, started
on this machine by ``ray.cluster_utils.Cluster`` (the scaling from one node to two, not a cluster's absolute speed).
Usage: python bench/bench_sweep.py [--eval-size 256] [--calib-size 128] [--quick] [--no-ray] [--no-local]
       [--cluster-nodes 1,2]
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ACCURACY_KEYS = ("baseline_top1", "top1", "top1_delta_pp", "agreement", "cosine")


def write_images(folder: Path, count: int, seed: int) -> None:
    """``count`` photo-like 500x375 JPEGs over 10 ImageNet class folders."""
    from resnext_deploy.data.datasets import imagenet_wnids

    rng = np.random.default_rng(seed)
    wnids = imagenet_wnids()[:10]
    for index in range(count):
        width, height = (500, 375) if index % 2 else (375, 500)
        coarse = rng.integers(0, 256, size=(height // 25 + 2, width // 25 + 2, 3), dtype=np.uint8)
        image = np.asarray(Image.fromarray(coarse).resize((width, height), Image.Resampling.BICUBIC), dtype=np.int16)
        image += rng.integers(-20, 21, size=image.shape, dtype=np.int16)
        target = folder / wnids[index % 10]
        target.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(target / f"img_{index:05d}.JPEG", quality=90)


def write_plan(work: Path, models: list[str], precisions: list[str]) -> Path:
    """A plan file whose [weights] table names one seeded random checkpoint per model."""
    import timm
    import torch

    from resnext_deploy.zoo import get_model_spec

    lines = [f"models = {models!r}", f"precisions = {precisions!r}", 'backends = ["onnxruntime"]', "", "[weights]"]
    for model in models:
        spec = get_model_spec(model)
        torch.manual_seed(0)
        network = timm.create_model(spec.timm_name, pretrained=False, num_classes=spec.num_classes, **spec.timm_kwargs)
        torch.save(network.state_dict(), work / f"{model}.pth")
        lines.append(f'{model} = "{model}.pth"')
    path = work / "plan.toml"
    path.write_text("\n".join(lines).replace("'", '"') + "\n")
    return path


def run(label: str, output: Path, data: Path, plan_file: Path, args: argparse.Namespace, **where) -> dict:  # type: ignore[no-untyped-def]
    from resnext_deploy.export import CalibrationOptions
    from resnext_deploy.sweep import SweepOptions, make_plan, run_sweep
    from resnext_deploy.verification import VerifyOptions

    plan = make_plan(plan_file)
    options = SweepOptions(
        plan=plan, output=output, calibration=CalibrationOptions(data=data, size=args.calib_size),
        verify=VerifyOptions(eval_size=args.eval_size, batch_sizes=(1, 8), duration=args.duration,
                             iterations=args.iterations, warmup_ms=args.warmup_ms, thresholds={"max_top1_drop": 100.0}),
        **where,
    )
    started = time.perf_counter()
    run_sweep(options, ["bench_sweep", label])
    sweep = json.loads((output / "sweep.json").read_text())
    sweep["bench_wall_s"] = time.perf_counter() - started
    return sweep


def evaluation_rows(label: str, sweep: dict) -> list[str]:
    rows = []
    for cell in sweep["cells"]:
        ev = cell.get("evaluation") or {}
        rows.append(f"| {label} | {cell['cell']} | {ev.get('count')} | {ev.get('decode_images_per_s_per_worker', 0):.1f} | "
                    f"{ev.get('infer_images_per_s_per_worker', 0):.1f} | {ev.get('images_per_s', 0):.1f} |")
    return rows


def run_on_cluster(nodes: int, work: Path, data: Path, plan_file: Path, args: argparse.Namespace) -> dict:
    """The sweep on a ``ray.cluster_utils.Cluster`` of ``nodes`` nodes with one CPU each, started and stopped here."""
    import ray
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    try:
        for _ in range(nodes - 1):
            cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, include_dashboard=False, log_to_driver=False)
        output = work / f"cluster-{nodes}"
        shutil.rmtree(output, ignore_errors=True)
        return run(f"cluster-{nodes}", output, data, plan_file, args, ray="auto")
    finally:
        ray.shutdown()
        cluster.shutdown()


def report_runs(runs: dict[str, dict]) -> None:
    """One row per run: wall time, FP32 exports done, cells, latency cores, shards, and whether numbers agree."""
    first = next(iter(runs.values()))
    reference = {c["cell"]: {k: c[k] for k in ACCURACY_KEYS} for c in first["cells"]}
    print(f"\n{len(first['cells'])} cells x {first['evaluation']['count']} evaluation images\n")
    print("| run | wall s | FP32 exports | cells | latency cores | eval shards | numbers as the first run |")
    print("|---|---|---|---|---|---|---|")
    for label, sweep in runs.items():
        exported = sum(model["exported_now"] for model in sweep["fp32"].values())
        same = {c["cell"]: {k: c[k] for k in ACCURACY_KEYS} for c in sweep["cells"]} == reference
        print(f"| {label} | {sweep['bench_wall_s']:.1f} | {exported} | {len(sweep['cells'])} | "
              f"{sweep['scheduler']['latency_threads']} | {sweep['scheduler']['eval_shards']} | {'yes' if same else 'NO'} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="resnext50d_32x4d,tv_resnext50_32x4d")
    parser.add_argument("--precisions", default="fp32,fp16,int8")
    parser.add_argument("--eval-size", type=int, default=256)
    parser.add_argument("--calib-size", type=int, default=128)
    parser.add_argument("--duration", type=float, default=1.0, help="latency seconds per batch size and side")
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--warmup-ms", type=float, default=200.0)
    parser.add_argument("--no-ray", action="store_true", help="skip the Ray run")
    parser.add_argument("--no-local", action="store_true", help="skip the local-pool runs and the resume")
    parser.add_argument("--cluster-nodes", default="", help="node counts of ray.cluster_utils.Cluster runs, e.g. 1,2")
    parser.add_argument("--work", type=Path, default=None, help="keep the sweeps here [default: a temp folder]")
    parser.add_argument("--quick", action="store_true",
                        help="smallest run that shows it works: one model, fp32+int8, 64 images, 2 latency runs")
    args = parser.parse_args()
    if args.quick:
        args.models, args.precisions, args.eval_size, args.calib_size = "resnext50d_32x4d", "fp32,int8", 64, 16
        args.duration, args.iterations, args.warmup_ms = 0.0, 2, 0.0
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-sweep."))
    data = work / "imagenet"
    if not data.is_dir():
        write_images(data / "train", args.calib_size, seed=1)
        write_images(data / "val", args.eval_size, seed=2)
    plan_file = write_plan(work, args.models.split(","), args.precisions.split(","))
    runs: dict[str, dict] = {}
    local = () if args.no_local else (("local, 1 worker", {"workers": 1}), ("local, 2 workers", {"workers": 2}))
    for label, where in local:
        output = work / label.replace(", ", "-").replace(" ", "")
        shutil.rmtree(output, ignore_errors=True)
        runs[label] = run(label, output, data, plan_file, args, **where)
    if not args.no_ray:
        import ray

        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)  # a local Ray instance, started here
        try:
            shutil.rmtree(work / "ray", ignore_errors=True)
            runs["Ray (local instance, 2 CPUs)"] = run("ray", work / "ray", data, plan_file, args, ray="auto")
        finally:
            ray.shutdown()
    for nodes in [int(n) for n in args.cluster_nodes.split(",") if n]:
        runs[f"Ray cluster, {nodes} node(s) x 1 CPU"] = run_on_cluster(nodes, work, data, plan_file, args)
    if args.no_local:
        report_runs(runs)
        return

    first = next(iter(runs.values()))
    first_dir = work / "local-1worker"
    for cell in first["cells"]:
        if cell["precision"] == "int8":
            shutil.rmtree(first_dir / cell["directory"])  # as if these cells had been killed: redone on resume
    resumed = run("resume", first_dir, data, plan_file, args, workers=1)
    print(f"work folder {work}")
    report_runs(runs)
    print("\nEvaluation (baseline + target per image): decoding and inference images/s per worker, all shards together")
    print("| run | cell | shards | decode img/s/worker | infer img/s/worker | img/s all shards |")
    print("|---|---|---|---|---|---|")
    for label, sweep in runs.items():
        print("\n".join(evaluation_rows(label, sweep)))
    print("\nFP32 export reuse (first run): one export per model, every cell starts from it")
    for model, record in first["fp32"].items():
        users = [c["cell"] for c in first["cells"] if c["model"] == model]
        print(f"  {model}: exported once in {record['seconds']}s; reused by {', '.join(users)}")
    for cell in first["cells"]:
        if cell["precision"] == "int8":
            print(f"  {cell['cell']}: calibration statistics computed (cache hit: {cell['stats_cache_hit']})")
    again = {c["cell"]: c for c in resumed["cells"]}
    exported = sum(model["exported_now"] for model in resumed["fp32"].values())
    print(f"\nResume after deleting the INT8 cells of the first run: {resumed['bench_wall_s']:.1f} s, {exported} FP32 export(s), "
          f"{sum(not c['resumed'] for c in again.values())} cell(s) redone")
    for cell in again.values():
        if not cell["resumed"]:
            print(f"  {cell['cell']}: redone from the kept FP32 ONNX, calibration statistics cache hit: {cell['stats_cache_hit']}")
    reference = {c["cell"]: {k: c[k] for k in ACCURACY_KEYS} for c in first["cells"]}
    same = all({c["cell"]: {k: c[k] for k in ACCURACY_KEYS} for c in sweep["cells"]} == reference
               for sweep in [*runs.values(), resumed])
    print(f"\naccuracy numbers identical in every run: {'yes' if same else 'NO'}")
    for cell, numbers in reference.items():
        print(f"  {cell}: " + ", ".join(f"{k} {v:.6g}" if isinstance(v, float) else f"{k} {v}" for k, v in numbers.items()))
    raise SystemExit(0 if same else 1)


if __name__ == "__main__":
    main()
