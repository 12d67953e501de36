"""The cases of issue 18 for ``bench/bench_faults.py`` (group ``issue18``): engine sidecars pointing elsewhere,
``verify --reference`` on FP32, foreign and hostile cache entries, a missed mixed-precision target, hostile
inputs that used to crash, telemetry and forks, a global key passphrase, oversized fields, a killed run's
staging folder, and a sweep's weights and plot line. Each case runs the CLI in its own process."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from bench_faults import (
    FORK_LOG_ENV,
    HERE,
    MB,
    Bench,
    Row,
    contents,
    edit_json,
    edited_bundle,
    scratch_of,
    size_of,
    wait_for,
    write_images,
)

DEEP = "[" * 200_000 + "]" * 200_000


def _with_prop(source: Path, target: Path, key: str, value: str) -> Path:
    import onnx

    proto = onnx.load(str(source))
    props = {prop.key: prop for prop in proto.metadata_props}
    if key not in props:
        props[key] = proto.metadata_props.add()
        props[key].key = key
    props[key].value = value
    target.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(proto, str(target))
    return target


def _point_at(sidecar: Path, key: str, value: str, target: Path) -> None:
    """The issue's forgery: the sidecar names ``value`` with ``target``'s true size, mtime and sha256."""
    stat = target.stat()
    edit_json(sidecar, lambda r: r[key].update(path=value, size=stat.st_size, mtime_ns=stat.st_mtime_ns,
                                               sha256=hashlib.sha256(target.read_bytes()).hexdigest()))


def _preprocess(**changes: Any) -> str:
    base = {"input_size": 64, "crop_pct": 0.875, "interpolation": "bilinear", "mean": [0.485, 0.456, 0.406],
            "std": [0.229, 0.224, 0.225]}
    return json.dumps(base | changes)


def sidecar_cases(bench: Bench, inputs: dict[str, Path]) -> None:
    work = bench.work / "i18-sidecars"
    work.mkdir()
    elsewhere = work / "elsewhere"
    elsewhere.mkdir()
    shutil.copyfile(inputs["fp32"] / "model.onnx", elsewhere / "model.onnx")
    tmp = bench.tmpdir("i18-prep")
    for backend in ("onnxruntime", "openvino"):
        bench.cli(["build", elsewhere / "model.onnx", "--backend", backend], tmp=tmp)
    foreign = {"onnxruntime": elsewhere / "model.ort-opt.onnx", "openvino": elsewhere / "model.openvino.blob"}
    records = {"onnxruntime": ("onnxruntime.json", "optimized_graph"), "openvino": ("openvino.json", "compiled_model")}
    for backend in ("onnxruntime", "openvino"):
        folder = Path(shutil.copytree(inputs["int8"], work / f"int8-{backend}"))
        bench.cli(["build", folder / "model.int8.onnx", "--backend", backend], tmp=tmp)
        suffix, key = records[backend]
        _point_at(folder / f"model.int8.{suffix}", key, os.fspath(foreign[backend]), foreign[backend])
        tmp = bench.tmpdir(f"i18-sidecar-{backend}")
        run = bench.cli(["verify", folder / "model.int8.onnx", "--backend", backend, "--no-latency", "--eval-data",
                         inputs["val"]], tmp=tmp)  # the bare file, as the issue did: no report.json checksums to catch it
        bench.record("18.1", f"{backend} sidecar beside model.int8.onnx names the FP32 engine elsewhere: verify", run, 2,
                     "may only name", left=contents(tmp) + scratch_of(folder))

    def outside(folder: Path) -> None:
        _point_at(folder / "model.onnxruntime.json", "optimized_graph", os.fspath(foreign["onnxruntime"]),
                  foreign["onnxruntime"])
        manifest = json.loads((folder / "manifest.json").read_text())
        for target in manifest["targets"]:
            if target["backend"] == "onnxruntime":
                target["artifact"] = os.fspath(foreign["onnxruntime"])
        (folder / "manifest.json").write_text(json.dumps(manifest))

    forged = edited_bundle(inputs["bundle"], work, "outside", outside, refresh=("model.onnxruntime.json",))
    for command in ("predict", "inspect"):
        tmp = bench.tmpdir(f"i18-bundle-{command}")
        args = [command, forged, inputs["image"]] if command == "predict" else [command, forged]
        run = bench.cli([*args, "--backend", "onnxruntime"] if command == "predict" else args, tmp=tmp)
        bench.record("18.1", f"unsigned bundle whose sidecar names an engine outside (checksums updated): {command}", run, 2,
                     "not a listed file", left=contents(tmp))


def reference_case(bench: Bench, inputs: dict[str, Path]) -> None:
    import onnx
    from onnx import numpy_helper

    work = bench.work / "i18-reference"
    work.mkdir()
    proto = onnx.load(str(inputs["fp32"] / "model.onnx"))
    weights = max(proto.graph.initializer, key=lambda t: int(np.prod(t.dims)))
    values = numpy_helper.to_array(weights)
    noise = np.random.default_rng(0).normal(0, float(values.std()), values.shape).astype(values.dtype)
    weights.CopyFrom(numpy_helper.from_array(values + noise, weights.name))
    onnx.save(proto, str(work / "model.onnx"))
    tmp = bench.tmpdir("i18-reference")
    run = bench.cli(["verify", work / "model.onnx", "--reference", inputs["fp32"] / "model.onnx", "--eval-data", inputs["val"],
                     "--no-latency", "--min-cosine", "0.9999", "--output", work / "out"], tmp=tmp)
    row = bench.record("18.2", "verify X.onnx (FP32, perturbed) --reference REF --min-cosine 0.9999", run, 1, "min_cosine",
                       left=contents(tmp))
    accuracy = json.loads((work / "out" / "report.json").read_text())["verification"]["accuracy"]
    row.message = f"mean cosine X vs REF {accuracy['mean_cosine']:.5f} (X vs itself would be 1.0, exit 0)"


def cache_cases(bench: Bench, inputs: dict[str, Path]) -> None:
    work = bench.work / "i18-cache"
    work.mkdir()
    cache = work / "cache"

    def export(out: Path, size: int, *extra: object) -> Any:
        return bench.cli(["export", "resnext_tiny", "-w", "random", "-p", "int8", "--calib-data", inputs["train"], "--calib-size",
                          str(size), "-o", out, "--no-verify", "--cache-dir", cache, *extra], tmp=bench.tmpdir("i18-cache"))

    def entry(out: Path) -> tuple[Path, Path]:
        report = json.loads((out / "report.json").read_text())
        key = report["quantization"]["stats_key"]
        stats = next((cache / "calibration").glob(f"*-{key[:24]}.json"))
        return stats, stats.with_suffix(".record.json")

    export(work / "a", 40)
    export(work / "b", 20)
    for source, target in zip(entry(work / "a"), entry(work / "b")):
        shutil.copyfile(source, target)
    tmp = bench.tmpdir("i18-foreign")
    run = bench.cli(["export", "resnext_tiny", "-w", "random", "-p", "int8", "--calib-data", inputs["train"], "--calib-size",
                     "20", "-o", work / "b", "--no-verify", "--cache-dir", cache, "--force"], tmp=tmp)
    hit = json.loads((work / "b" / "report.json").read_text())["quantization"]["stats_cache_hit"]
    row = bench.record("18.3", "another subset's statistics copied under this key", run, 0, "", left=contents(tmp))
    row.clear, row.message = row.clear and hit is False, f"stats_cache_hit {hit}: recalibrated and rewritten"
    stats, _ = entry(work / "b")
    edit_json(stats, lambda d: next(iter(d["data"].values())).update(
        highest={"CLS": "numpy.array", "dtype": "(300000000,)f4", "data": [1.0]}))
    tmp = bench.tmpdir("i18-dtype")
    run = bench.cli(["export", "resnext_tiny", "-w", "random", "-p", "int8", "--calib-data", inputs["train"], "--calib-size",
                     "20", "-o", work / "b", "--no-verify", "--cache-dir", cache, "--force"], tmp=tmp)
    hit = json.loads((work / "b" / "report.json").read_text())["quantization"]["stats_cache_hit"]
    row = bench.record("18.3", "cache entry with dtype (300000000,)f4", run, 0, "", left=contents(tmp), rss_limit_mb=2048)
    row.clear, row.message = row.clear and hit is False, f"stats_cache_hit {hit}: a miss, no 1.2 GB array"


def mixed_precision_cases(bench: Bench, inputs: dict[str, Path]) -> None:
    work = bench.work / "i18-mixed"
    work.mkdir()
    out = work / "out"
    args = ["export", "resnext_tiny", "-w", "random", "-p", "int8", "--backend", "onnxruntime", "--calib-data", inputs["train"],
            "--calib-size", "20", "--tune-size", "20", "--target-cosine", "0.99999999", "--max-fallback-layers", "1",
            "--cache-dir", work / "cache", "-o", out, "--eval-data", inputs["val"], "--no-latency", "--max-top1-drop", "100"]
    tmp = bench.tmpdir("i18-mixed")
    run = bench.cli(args, tmp=tmp)
    row = bench.record("18.4", "mixed-precision target missed (with verification)", run, 1, "mixed precision gate failed",
                       left=contents(tmp) + scratch_of(out))
    gates = json.loads((out / "report.json").read_text())["gates"]
    head = (out / "report.md").read_text().splitlines()[:3]
    ok = gates["passed"] is False and "target_cosine" in gates["failed"] and "failed" in head[0] and "target_cosine" in head[2]
    row.clear, row.message = row.clear and ok, f"report.json gates.failed {gates['failed']}; report.md: {head[0][-9:]}"
    entries = list((work / "cache" / "sensitivity").glob("*.json"))
    with open(entries[0], "r+b") as handle:  # 296 MB: an entry that ran past 600 s before
        handle.truncate(296 * MB)
    tmp = bench.tmpdir("i18-sens-huge")
    run = bench.cli([*args, "--force"], tmp=tmp)
    row = bench.record("18.8", "296 MB sensitivity-cache entry (re-analysed)", run, 1, "mixed precision gate failed",
                       left=contents(tmp) + scratch_of(out), rss_limit_mb=2048)
    row.note = f"{run.seconds:.1f}s"


def hostile_input_cases(bench: Bench, inputs: dict[str, Path]) -> None:
    work = bench.work / "i18-hostile"
    work.mkdir()
    fp32, int8 = inputs["fp32"] / "model.onnx", inputs["int8"] / "model.int8.onnx"
    bare = [
        ("preprocess a string", fp32, "preprocess", '"a string"', "preprocess"),
        ("negative input_size", fp32, "preprocess", _preprocess(input_size=-224), "preprocess.input_size"),
        ("weights a string", fp32, "weights", '"a string"', "weights"),
        ("NaN mean", fp32, "preprocess", _preprocess(mean=[float("nan"), 0.4, 0.4]), "preprocess.mean"),
        ("NaN std", fp32, "preprocess", _preprocess(std=[0.2, 0.2, float("nan")]), "preprocess.std"),
        ("precision claim fp32 on an INT8 graph", int8, "precision", '"fp32"', "but its graph is int8"),
        ("200k-deep JSON", fp32, "model_name", DEEP, "nested too deeply"),
    ]
    for case, source, key, value, words in bare:
        target = _with_prop(source, work / case.replace(" ", "_") / source.name, key, value)
        if source == int8:
            shutil.copyfile(fp32, target.with_name("model.onnx"))
        tmp = bench.tmpdir(f"i18-{case}")
        run = bench.cli(["verify", target, "--eval-data", inputs["val"], "--no-latency"], tmp=tmp)
        bench.record("18.5", f"bare ONNX metadata: {case}", run, 2, words, left=contents(tmp))
    deep = _with_prop(fp32, work / "deep-build" / "model.onnx", "preprocess", DEEP)
    tmp = bench.tmpdir("i18-deep-build")
    bench.record("18.5", "build of a bare ONNX with 200k-deep metadata", bench.cli(["build", deep], tmp=tmp), 2,
                 "nested too deeply", left=contents(tmp) + size_of(deep.with_name("model.onnxruntime.json")))

    earlier = {
        "missing keys": {"schema": "resnext-deploy/report", "verification": {"x": 1}},
        "string values": {"schema": "resnext-deploy/sweep", "cells": [{"compare": {
            "model": "resnext_tiny", "precision": "int8", "backend": "onnxruntime", "target_top1": "high", "eval": {}}}]},
    }
    for case, record in earlier.items():
        path = work / f"earlier-{case.replace(' ', '-')}.json"
        path.write_text(json.dumps(record))
        earlier[case] = path  # type: ignore[assignment]
    deep_file = work / "earlier-deep.json"
    deep_file.write_text('{"schema": "resnext-deploy/sweep", "cells": ' + DEEP + "}")
    earlier["deep nesting"] = deep_file  # type: ignore[assignment]
    copy = Path(shutil.copytree(inputs["int8"], work / "int8"))
    for case, path in earlier.items():
        tmp = bench.tmpdir(f"i18-compare-{case}")
        run = bench.cli(["verify", copy, "--eval-data", inputs["val"], "--no-latency", "--compare-to", path], tmp=tmp)
        verified = "verification" in json.loads((copy / "report.json").read_text())
        row = bench.record("18.5", f"verify --compare-to with {case}", run, 2, "--compare-to", left=contents(tmp) + scratch_of(copy))
        row.clear = row.clear and not verified  # refused before any evaluation
    for command in ("export", "sweep"):
        out = work / f"never-{command}"
        args = (["export", "resnext_tiny", "-w", "random"] if command == "export" else
                ["sweep", "--models", "resnext_tiny", "--precisions", "fp32", "--backends", "onnxruntime", "--weights", "random"])
        tmp = bench.tmpdir(f"i18-compare-{command}")
        run = bench.cli([*args, "--eval-data", inputs["val"], "--compare-to", earlier["string values"], "-o" if command == "export"
                         else "--output", out], tmp=tmp)
        row = bench.record("18.5", f"{command} --compare-to with string values", run, 2, "target_top1", left=contents(tmp) + size_of(out))
        row.note = f"{run.seconds:.1f}s"

    def sidecar_path_int(folder: Path) -> None:
        edit_json(folder / "model.onnxruntime.json", lambda r: r["optimized_graph"].update(path=7))

    tmp = bench.tmpdir("i18-int-path")
    bundle = edited_bundle(inputs["bundle"], work, "int-path", sidecar_path_int, refresh=("model.onnxruntime.json",))
    run = bench.cli(["predict", bundle, inputs["image"], "--backend", "onnxruntime"], tmp=tmp)
    bench.record("18.5", "bundle sidecar whose path is an integer: predict", run, 2, "does not name its engine file",
                 left=contents(tmp))

    from resnext_deploy.bundle import safe_extract

    signed = safe_extract(inputs["signed"], work / "signed")
    edit_json(signed / "manifest.json.sig", lambda r: r.update(key={"an": "object"}))
    tmp = bench.tmpdir("i18-sig")
    run = bench.cli(["inspect", signed, "--trusted-key", inputs["keys"] / "ours.pub"], tmp=tmp)
    bench.record("18.5", "manifest.json.sig whose key is an object", run, 2, "key: Input should be a valid string",
                 left=contents(tmp))


def process_cases(bench: Bench, inputs: dict[str, Path]) -> None:
    work = bench.work / "i18-process"
    work.mkdir()
    home = work / "home"
    home.mkdir()
    forks = work / "forks.log"
    quiet = {"HOME": str(home), "ORT_DISABLE_TELEMETRY": "0", FORK_LOG_ENV: str(forks), "CI": "", "XDG_CACHE_HOME": ""}
    tmp = bench.tmpdir("i18-home")
    bare = work / "bare" / "model.onnx"
    bare.parent.mkdir()
    shutil.copyfile(inputs["fp32"] / "model.onnx", bare)
    runs = [bench.cli(["predict", inputs["bundle"], inputs["image"], "--backend", backend], tmp=tmp, env_extra=quiet)
            for backend in ("onnxruntime", "openvino")]
    runs.append(bench.cli(["build", bare, "--backend", "openvino"], tmp=tmp, env_extra=quiet))
    written = sorted(p.relative_to(home).as_posix() for p in home.rglob("*"))
    count = forks.read_text().count("fork") if forks.exists() else 0
    row = bench.record("18.6", "predict (both engines) + OpenVINO build, HOME empty", runs[-1], 0, "built",
                       left=size_of(*home.iterdir()) + contents(tmp))
    row.clear = row.clear and all(r.code == 0 for r in runs) and count == 0 and not written
    row.message = f"under HOME: {written or 'nothing'}; forks in our process: {count}"

    folder = work / "many"
    folder.mkdir()
    from PIL import Image

    pixels = (np.random.default_rng(0).random((1200, 1600, 3)) * 255).astype(np.uint8)
    Image.fromarray(pixels).save(folder / "0.jpg", quality=90)
    for index in range(1, 300):
        os.link(folder / "0.jpg", folder / f"{index}.jpg")
    tmp = bench.tmpdir("i18-sigterm")
    env = os.environ | {"TMPDIR": str(tmp), "HOME": str(home)}
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, str(HERE), "--as-cli", "predict", str(inputs["bundle"]),
                                *sorted(map(str, folder.iterdir())), "--backend", "openvino"], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    maps = Path(f"/proc/{process.pid}/maps")
    loaded = wait_for(lambda: maps.is_file() and "libopenvino" in maps.read_text(errors="replace"), process)
    os.killpg(process.pid, signal.SIGTERM)
    sent = time.perf_counter()
    try:
        _, stderr = process.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        _, stderr = process.communicate()
    ended = time.perf_counter() - sent
    group_gone = False
    for _ in range(100):
        try:
            os.killpg(process.pid, 0)
        except ProcessLookupError:
            group_gone = True
            break
        time.sleep(0.1)
    ok = loaded and process.returncode == 143 and group_gone
    bench.rows.append(Row("18.6", "SIGTERM to predict's process group while OpenVINO runs", process.returncode, 143,
                          f"ended {ended:.1f}s after SIGTERM, process group {'gone' if group_gone else 'ALIVE'}", ok,
                          contents(tmp), 0, 1, f"{time.perf_counter() - started:.1f}s"))


def passphrase_case(bench: Bench, inputs: dict[str, Path]) -> None:
    tmp = bench.tmpdir("i18-passphrase")
    out = bench.work / "i18-passphrase.tar.gz"
    run = bench.cli(["package", inputs["fp32"], "-o", out, "--sign", inputs["keys"] / "ours.pem"], tmp=tmp,
                    env_extra={"RESNEXT_DEPLOY_KEY_PASSPHRASE": "set-for-every-ci-job"})
    bench.record("18.7", "sign with an unencrypted key, passphrase set globally", run, 0, "signed", left=contents(tmp))


def oversized_case(bench: Bench, inputs: dict[str, Path]) -> None:
    work = bench.work / "i18-oversized"
    target = _with_prop(inputs["fp32"] / "model.onnx", work / "model.onnx", "model_name", json.dumps("x" * (20 * MB)))
    tmp = bench.tmpdir("i18-20mb")
    run = bench.cli(["verify", target, "--eval-data", inputs["val"], "--no-latency"], tmp=tmp)
    row = bench.record("18.8", "20 MB model_name in a bare ONNX", run, 2, "characters, more than", left=contents(tmp))
    row.note = f"{run.seconds:.1f}s, {len(run.output):,} chars printed"


def staging_case(bench: Bench, inputs: dict[str, Path]) -> None:
    out = Path(shutil.copytree(inputs["int8"], bench.work / "i18-staging"))
    tmp = bench.tmpdir("i18-staging")
    args = ["export", "resnext_tiny", "-w", "random", "-p", "int8", "--calib-data", inputs["train"], "--calib-size", "60",
            "--calib-method", "entropy", "--cache-dir", bench.work / "i18-staging-cache", "-o", out, "--no-verify"]

    def kill_in_calibration(process: subprocess.Popen) -> None:
        staged = out / ".resnext-staging" / "work"
        if wait_for(lambda: staged.is_dir() and any(d.name.startswith("resnext-calib.") for q in staged.iterdir()
                                                    if q.is_dir() for d in q.iterdir()), process):
            process.send_signal(signal.SIGKILL)

    killed = bench.cli([*args, "--force"], tmp=tmp, on_start=kill_in_calibration)
    left = scratch_of(out)
    run = bench.cli(args, tmp=tmp)
    row = bench.record("18.9", "refused start (no --force) after a SIGKILLed --force run", run, 2, "already holds",
                       left=contents(tmp) + scratch_of(out))
    row.message = f"killed: exit {killed.code}, {left:,} B in staging; refused rerun removed it"


def sweep_cases(bench: Bench, inputs: dict[str, Path]) -> None:
    work = bench.work / "i18-sweep"
    work.mkdir()
    garbage = work / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    tmp = bench.tmpdir("i18-sweep-weights")
    run = bench.cli(["sweep", "--models", "resnext_tiny", "--precisions", "fp32", "--backends", "onnxruntime", "--weights",
                     garbage, "--output", work / "never"], tmp=tmp)
    row = bench.record("18.10", "sweep with a weights file that is no checkpoint", run, 2, "is not a checkpoint",
                       left=contents(tmp) + size_of(work / "never"))
    row.note = f"{run.seconds:.1f}s"
    tmp = bench.tmpdir("i18-sweep-plot")
    out = work / "out"
    run = bench.cli(["sweep", "--models", "resnext_tiny", "--precisions", "fp32", "--backends", "onnxruntime", "--weights",
                     "random", "--eval-data", inputs["val"], "--no-latency", "--workers", "1", "--output", out], tmp=tmp)
    row = bench.record("18.10", "sweep --no-latency: the reports line", run, 0, "reports:", left=contents(tmp))
    line = next((line for line in run.output.splitlines() if "reports:" in line), "")
    row.clear = row.clear and "pareto.png" not in line and not (out / "pareto.png").exists()
    row.message = "no pareto.png named or written" if row.clear else line[:110]


def issue18_cases(bench: Bench, inputs: dict[str, Path]) -> None:
    """Every case of issue 18, in the issue's order."""
    for group in (sidecar_cases, reference_case, cache_cases, mixed_precision_cases, hostile_input_cases, process_cases,
                  passphrase_case, oversized_case, staging_case, sweep_cases):
        group(bench, inputs)
