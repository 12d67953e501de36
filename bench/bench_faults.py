"""Replay the adversarial cases of issues 11 and 18 against the CLI, each in its own process, one row per case.

Columns: the exit code (and the one expected), whether the message is clear (the expected words, no
traceback), the bytes left behind (in a private system temp folder and in the output directory's
staging folder, hidden temporaries and lock, or a whole output directory that a refused command
must not create; ONNX Runtime's own 51-byte ``.ses`` marker in the temp folder is not counted), and the
peak RSS of the process (its own ``VmHWM`` at exit: ``os.wait4``'s figure would include this script's
memory, copied at fork; it is the fallback for a killed process). A row is green when all four hold.

The disk-full cases mount a small tmpfs when run as root (a true ENOSPC, unmounted at once);
elsewhere a file-size limit (``RLIMIT_FSIZE``, EFBIG) fails the same write.

By default the cases use a tiny ResNeXt (random weights, 64x64) and generated images, so the whole
replay takes a few minutes on 2 cores. ``--full`` adds the two memory figures of the README at full
scale: predict over 10,000 images (< 1 GB) and the INT8 export of resnext50d_32x4d calibrated on
512 images (< 4 GB); those take about 15 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import io
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve()
TINY_KWARGS = dict(layers=(1, 1, 1, 1), cardinality=8, base_width=4, channels=(32, 64, 128, 256), stem_width=32)
MB = 1024 * 1024
PEAK_ENV = "RESNEXT_BENCH_PEAK_FILE"


def record_peak_at_exit() -> None:
    """Write this process's peak RSS (VmHWM of its own address space, KiB) to $RESNEXT_BENCH_PEAK_FILE at exit."""
    import atexit

    def write() -> None:
        status = Path("/proc/self/status").read_text()
        line = next(line for line in status.splitlines() if line.startswith("VmHWM:"))
        Path(os.environ[PEAK_ENV]).write_text(line.split()[1])

    if os.environ.get(PEAK_ENV) and Path("/proc/self/status").is_file():
        atexit.register(write)


def register_tiny() -> None:
    """``resnext_tiny``: a one-block-per-stage ResNeXt at 64x64, 10 classes (the tests' tiny model)."""
    from resnext_deploy.zoo import ModelSpec, PreprocessConfig, register_model

    register_model(ModelSpec(
        name="resnext_tiny", timm_name="resnext50_32x4d", pretrained_tag="",
        preprocess=PreprocessConfig(input_size=64, crop_pct=0.875, interpolation="bilinear"), params_m=1.01, gmacs=0.024,
        top1=None, top5=None, weights_source="random", num_classes=10, timm_kwargs=TINY_KWARGS,
    ))


@dataclass
class Row:
    item: str
    case: str
    code: int
    expected: int
    message: str
    clear: bool
    left: int
    rss_mb: float
    rss_limit_mb: float
    note: str = ""

    @property
    def green(self) -> bool:
        return self.code == self.expected and self.clear and self.left == 0 and self.rss_mb <= self.rss_limit_mb


@dataclass
class Run:
    code: int
    output: str
    rss_mb: float
    seconds: float


@dataclass
class Bench:
    work: Path
    rows: list[Row] = field(default_factory=list)

    def tmpdir(self, case: str) -> Path:
        folder = self.work / "tmp" / case.replace(" ", "_")[:40]
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        return folder

    def cli(self, args: list[object], *, tmp: Path, on_start: Callable[[subprocess.Popen], None] | None = None,
            limit_file_bytes: int | None = None, timeout: float = 900, tiny: bool = True,
            env_extra: dict[str, str] | None = None) -> Run:
        """Run the CLI in a child process with its own TMPDIR; its exit code, output and peak RSS."""
        command = [sys.executable, str(HERE), "--as-cli" if tiny else "--as-plain-cli", *map(str, args)]
        peak_file = self.work / "peak-kib.txt"
        peak_file.unlink(missing_ok=True)
        env = os.environ | {"TMPDIR": str(tmp), "HF_HUB_OFFLINE": "1", "COLUMNS": "200", PEAK_ENV: str(peak_file),
                            "RESNEXT_DEPLOY_CACHE": str(self.work / "cache")} | (env_extra or {})

        def limits() -> None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit_file_bytes, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))

        log = self.work / "last-output.txt"
        started = time.perf_counter()
        with open(log, "wb") as sink:
            process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, env=env,
                                       preexec_fn=limits if limit_file_bytes is not None else None)
            if on_start is not None:
                on_start(process)
            deadline = time.monotonic() + timeout
            while True:
                pid, status, usage = os.wait4(process.pid, os.WNOHANG)
                if pid:
                    break
                if time.monotonic() > deadline:
                    process.kill()
                time.sleep(0.05)
            process.returncode = os.waitstatus_to_exitcode(status)
        try:  # the child's own high-water mark: wait4's ru_maxrss would include this (large) process, copied at fork
            peak_kib = float(peak_file.read_text())
        except (OSError, ValueError):  # killed before it could say: wait4's figure, an upper bound
            peak_kib = usage.ru_maxrss
        return Run(process.returncode, log.read_text(errors="replace"), peak_kib / 1024, time.perf_counter() - started)

    def record(self, item: str, case: str, run: Run, expected: int, words: str, left: int = 0,
               rss_limit_mb: float = 2048, note: str = "") -> Row:
        lines = [line.strip() for line in run.output.splitlines() if line.strip()]
        shown = next((line for line in lines if line.startswith(("error:", "interrupted", "internal error:"))), "")
        if not shown and words:
            shown = next((line for line in lines if words in line), "")
        if not shown and lines:
            shown = lines[-1]
        text = " ".join(run.output.split())
        clear = words in text and "Traceback" not in run.output
        row = Row(item, case, run.code, expected, shown[:110], clear, left, run.rss_mb, rss_limit_mb, note)
        self.rows.append(row)
        mark = "ok " if row.green else "BAD"
        print(f"[{mark}] {item:>3} {case}: exit {run.code} ({run.seconds:.1f}s)", file=sys.stderr, flush=True)
        if not row.green:
            print(textwrap.indent(run.output[-3000:], "      | "), file=sys.stderr)
        return row


def size_of(*paths: Path) -> int:
    """Bytes of every file under ``paths`` (a directory that exists counts as its own size, so a refused
    command that leaves an empty output directory is not green)."""
    total = 0
    for path in paths:
        if path.is_file() or path.is_symlink():
            total += path.lstat().st_size
        elif path.is_dir():
            total += path.stat().st_size + sum(p.lstat().st_size for p in path.rglob("*") if p.is_file() or p.is_symlink())
    return total


ORT_MARKER = ".ses"  # ONNX Runtime's own session marker: one 51-byte file per temp folder, rewritten, never ours


def contents(folder: Path) -> int:
    """Bytes of the files a run left in a folder that must stay (the private system temp folder)."""
    return sum(p.lstat().st_size for p in folder.rglob("*") if (p.is_file() or p.is_symlink()) and p.name != ORT_MARKER)


def scratch_of(out: Path) -> int:
    """What a run may not leave in an output directory: its staging folder, hidden temporaries, the lock."""
    if not out.is_dir():
        return 0
    hidden = [p for p in out.iterdir() if p.name.startswith(".")]
    return size_of(*hidden)


# --- data -----------------------------------------------------------------------------------------------

def write_images(folder: Path, count: int, size: tuple[int, int] = (96, 80), seed: int = 0, classes: int = 10) -> list[Path]:
    """JPEGs in ImageFolder layout (the first ``classes`` ImageNet wnids), smooth random colour fields."""
    from PIL import Image

    from resnext_deploy.data.datasets import imagenet_wnids

    rng = np.random.default_rng(seed)
    wnids = imagenet_wnids()
    paths = []
    for index in range(count):
        cls = index % classes
        base = rng.uniform(0, 255, (4, 4, 3)).astype(np.uint8)
        image = Image.fromarray(base).resize(size, Image.Resampling.BILINEAR)
        path = folder / wnids[cls] / f"{wnids[cls]}_{index}.JPEG"
        path.parent.mkdir(parents=True, exist_ok=True)
        image.save(path, quality=85)
        paths.append(path)
    return paths


def repack(directory: Path, output: Path, refresh: tuple[str, ...] = ()) -> Path:
    """Tar a (modified) bundle folder the way `package` lays it out, re-recording the checksums of ``refresh``."""
    import hashlib

    manifest = json.loads((directory / "manifest.json").read_text())
    for record in manifest["files"]:
        if record["path"] in refresh:
            data = (directory / record["path"]).read_bytes()
            record.update(size=len(data), sha256=hashlib.sha256(data).hexdigest())
    (directory / "manifest.json").write_text(json.dumps(manifest))
    paths = sorted((p for p in directory.rglob("*") if p.is_file()), key=lambda p: (p.name != "manifest.json", str(p)))
    with tarfile.open(output, "w:gz", compresslevel=1) as tar:
        for path in paths:
            tar.add(path, arcname=path.relative_to(directory).as_posix())
    return output


def edited_bundle(bundle: Path, work: Path, name: str, edit: Callable[[Path], None], refresh: tuple[str, ...] = ()) -> Path:
    from resnext_deploy.bundle import safe_extract

    folder = safe_extract(bundle, work / f"{name}.d")
    edit(folder)
    return repack(folder, work / f"{name}.tar.gz", refresh)


def edit_json(path: Path, change: Callable[[dict], None]) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


class Zeros(io.RawIOBase):
    def __init__(self, size: int) -> None:
        self.left = size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def]
        n = min(len(buffer), self.left)
        buffer[:n] = bytes(n)
        self.left -= n
        return n


def tar_bomb(bundle: Path, output: Path, size: int) -> Path:
    """The bundle with an unlisted all-zero member of ``size`` bytes right after the manifest."""
    with tarfile.open(bundle) as source, open(output, "wb") as raw, \
            gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=9, mtime=0) as gz, tarfile.open(fileobj=gz, mode="w") as tar:
        for index, member in enumerate(source.getmembers()):
            if index == 1:
                info = tarfile.TarInfo("zeros.bin")
                info.size = size
                tar.addfile(info, Zeros(size))
            tar.addfile(member, source.extractfile(member) if member.isreg() else None)
    return output


def wait_for(condition: Callable[[], bool], process: subprocess.Popen, timeout: float = 300) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        if condition():
            return True
        time.sleep(0.02)
    return False


def try_tmpfs(path: Path, size_mb: float) -> bool:
    """Mount a small tmpfs at ``path`` (root only) for a true 'no space left on device'."""
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={int(size_mb * 1024)}k", "tmpfs", str(path)],
                          capture_output=True)
    return done.returncode == 0


def unmount(path: Path) -> None:
    subprocess.run(["umount", str(path)], capture_output=True)


# --- the cases ----------------------------------------------------------------------------------------------

def prepare(bench: Bench) -> dict[str, Path]:
    """Shared inputs: images, a tiny FP32 export and its bundle, a tiny INT8 export, signing keys."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    work = bench.work
    data = {"train": work / "data" / "train", "val": work / "data" / "val", "empty": work / "data" / "empty"}
    write_images(data["train"], 60, seed=0)
    write_images(data["val"], 30, seed=1)
    data["empty"].mkdir(parents=True)
    tmp = bench.tmpdir("prepare")
    fp32, int8 = work / "exports" / "fp32", work / "exports" / "int8"
    for args in (["export", "resnext_tiny", "-w", "random", "-o", fp32, "--no-verify"],
                 ["export", "resnext_tiny", "-w", "random", "-p", "int8", "--calib-data", data["train"], "--calib-size", "40",
                  "-o", int8, "--no-verify"],
                 ["package", fp32, "-o", work / "bundles" / "fp32.tar.gz"]):
        run = bench.cli(args, tmp=tmp)
        if run.code != 0:
            raise SystemExit(f"preparing the bench failed: {' '.join(map(str, args))}\n{run.output}")
    keys = work / "keys"
    keys.mkdir()
    for name in ("ours", "theirs"):
        key = Ed25519PrivateKey.generate()
        (keys / f"{name}.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                             serialization.NoEncryption()))
        (keys / f"{name}.pub").write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                                         serialization.PublicFormat.SubjectPublicKeyInfo))
    run = bench.cli(["package", fp32, "-o", work / "bundles" / "signed.tar.gz", "--sign", keys / "ours.pem"], tmp=tmp)
    if run.code != 0:
        raise SystemExit(f"signing failed:\n{run.output}")
    image = write_images(work / "images", 1, seed=3)[0]
    return data | {"fp32": fp32, "int8": int8, "bundle": work / "bundles" / "fp32.tar.gz",
                   "signed": work / "bundles" / "signed.tar.gz", "keys": keys, "image": image}


def bundle_cases(bench: Bench, inputs: dict[str, Path]) -> None:
    work, bundle, image = bench.work / "bundle-cases", inputs["bundle"], inputs["image"]
    work.mkdir()

    def predict_case(item: str, case: str, tarball: Path, words: str, extra: tuple = (), expected: int = 2) -> None:
        tmp = bench.tmpdir(case)
        run = bench.cli(["predict", tarball, image, *extra], tmp=tmp)
        bench.record(item, case, run, expected, words, left=contents(tmp), rss_limit_mb=1024)

    huge = edited_bundle(bundle, work, "huge", lambda d: edit_json(d / "preprocess.json", lambda p: p.update(input_size=100000)),
                         refresh=("preprocess.json",))
    predict_case("1", "preprocess.json input_size 100000 (checksums re-computed)", huge, "less than or equal to 4096")

    tarball = Path(shutil.copy(bundle, work / "device.tar.gz"))
    tmp = bench.tmpdir("build-1")
    bench.cli(["build", tarball, "--backend", "onnxruntime"], tmp=tmp)
    shutil.copy(inputs["signed"], tarball)  # an update arrives under the same name
    run = bench.cli(["build", tarball, "--backend", "onnxruntime"], tmp=tmp)
    left = contents(tmp) + size_of(*[p for p in work.iterdir() if p.name.startswith(".device")])
    bench.record("2", "build X.tar.gz after X.tar.gz was replaced", run, 0, "unpacked device.tar.gz afresh", left=left)

    tmp = bench.tmpdir("bomb")
    bomb = tar_bomb(bundle, work / "bomb.tar.gz", 2 * 1024**3)
    run = bench.cli(["inspect", bomb], tmp=tmp)
    bench.record("3", f"tar bomb: unlisted 2 GiB zero member ({bomb.stat().st_size / MB:.1f} MB compressed)", run, 2,
                 "not listed in manifest.json: zeros.bin", left=contents(tmp), rss_limit_mb=1024)

    edited = edited_bundle(bundle, work, "edited", lambda d: edit_json(d / "manifest.json",
                                                                       lambda m: m["model"].update(random_weights=False)))
    tmp = bench.tmpdir("edited")
    bench.record("4", "manifest edited: random_weights false", bench.cli(["inspect", edited], tmp=tmp), 2,
                 "random_weights: manifest says False", left=contents(tmp))
    keys = inputs["keys"]
    predict_case("4", "signed bundle, --trusted-key of another signer", inputs["signed"], "not a trusted key",
                 ("--trusted-key", keys / "theirs.pub"))
    predict_case("4", "unsigned bundle, --require-signature", bundle, "is not signed",
                 ("--trusted-key", keys / "ours.pub", "--require-signature"))
    predict_case("4", "signed bundle, the signer's --trusted-key", inputs["signed"], "RANDOM WEIGHTS",
                 ("--trusted-key", keys / "ours.pub", "--require-signature"), expected=0)
    no_model = edited_bundle(bundle, work, "no-model", lambda d: edit_json(d / "manifest.json", lambda m: m.pop("model")))
    predict_case("5", "manifest without 'model'", no_model, "model: Field required")
    abc = edited_bundle(bundle, work, "abc", lambda d: edit_json(d / "manifest.json", lambda m: m["model"].update(num_classes="abc")))
    predict_case("5", "manifest num_classes 'abc'", abc, "num_classes: Input should be a valid integer")


def export_dir_cases(bench: Bench, inputs: dict[str, Path]) -> None:
    work = bench.work / "export-cases"
    work.mkdir()
    over = Path(shutil.copytree(inputs["int8"], work / "force"))
    tmp = bench.tmpdir("force")
    run = bench.cli(["export", "resnext_tiny", "-w", "random", "-o", over, "--force", "--no-verify"], tmp=tmp)
    stale = [p for p in over.rglob("*") if "int8" in p.name or p.parent.name == "calibration"]
    bench.record("6", "--force fp32 over an int8 export (stale files left)", run, 0, "removed", left=contents(tmp) + size_of(*stale) + scratch_of(over))

    swapped = Path(shutil.copytree(inputs["int8"], work / "swapped"))
    a, b = swapped / "model.onnx", swapped / "model.int8.onnx"
    os.replace(a, work / "x")
    os.replace(b, a)
    os.replace(work / "x", b)
    for command in (["verify", swapped, "--no-latency"], ["package", swapped, "-o", work / "swapped.tar.gz"]):
        tmp = bench.tmpdir(f"swap-{command[0]}")
        run = bench.cli(command, tmp=tmp)
        bench.record("7", f"model.onnx <-> model.int8.onnx swapped: {command[0]}", run, 2, "is not the file this export wrote",
                     left=contents(tmp) + size_of(work / "swapped.tar.gz") + scratch_of(swapped))

    escaping = Path(shutil.copytree(inputs["int8"], work / "escaping"))
    (work / "outside.onnx").write_bytes(b"outside")
    edit_json(escaping / "report.json", lambda r: r["artifacts"].update(int8="../outside.onnx"))
    tmp = bench.tmpdir("escape")
    bench.record("8", "report.json artifact '../outside.onnx'", bench.cli(["verify", escaping, "--no-latency"], tmp=tmp), 2,
                 "a path outside", left=contents(tmp) + scratch_of(escaping))
    report = json.loads((inputs["int8"] / "report.json").read_text())
    engine = report["engine"]["artifact"]
    absolute = [key for key in ("path", "source_onnx", "sidecar") if Path(engine[key]).is_absolute()]
    bench.rows.append(Row("8", "engine paths in report.json are relative", 0 if not absolute else 1, 0,
                          f"path={engine['path']}, sidecar={engine['sidecar']}", not absolute, 0, 0, 1))

    data = inputs
    corrupt = work / "corrupt-data"
    shutil.copytree(data["train"], corrupt)
    first = next(corrupt.rglob("*.JPEG"))
    first.write_bytes(first.read_bytes()[:200])
    labels_dir = work / "flat"
    flat = write_images(labels_dir, 30, seed=5)
    flat_folder = work / "flatdir"
    flat_folder.mkdir()
    for path in flat:
        shutil.move(path, flat_folder / path.name)
    few = work / "few.txt"
    few.write_text("".join(f"{p.name} 0\n" for p in sorted(flat_folder.iterdir())[:5]))
    latin = work / "latin1.txt"
    latin.write_bytes("caf\xe9.JPEG 1\n".encode("latin-1"))
    conflict = work / "conflict.txt"
    names = sorted(p.name for p in flat_folder.iterdir())
    conflict.write_text("".join(f"{n} 0\n" for n in names) + f"{names[0]} 3\n")
    out = work / "never"
    int8 = ["-p", "int8", "--calib-size", "20"]
    early = [
        ("9", "empty calibration folder", [*int8, "--calib-data", data["empty"]], "no images"),
        ("9", "--strict with a truncated JPEG", [*int8, "--calib-data", corrupt, "--strict"], "cannot read 1 of 20"),
        ("9", "evaluation = calibration images", [*int8, "--calib-data", data["train"], "--eval-data", data["train"]],
         "also calibration images"),
        ("9", "batch range min 8 > opt 4", ["--min-batch", "8", "--opt-batch", "4"], "batch range"),
        ("9", "--opset 99", ["--opset", "99"], "--opset 99 is newer than the dynamo exporter supports"),
        ("10", "non-UTF-8 labels file", ["--eval-data", flat_folder, "--eval-labels", latin], "not UTF-8 text"),
        ("10", "--junit pointing at a folder", ["--junit", work], "is a folder"),
        ("15", "labels cover 5 of 30 images", ["--eval-data", flat_folder, "--eval-labels", few], "labels only 5 of the 30"),
        ("15", "conflicting duplicate labels", ["--eval-data", flat_folder, "--eval-labels", conflict], "conflicting labels"),
    ]
    for item, case, extra, words in early:
        tmp = bench.tmpdir(case)
        run = bench.cli(["export", "resnext_tiny", "-w", "random", "-o", out, *extra], tmp=tmp)
        row = bench.record(item, case, run, 2, words, left=contents(tmp) + size_of(out))
        row.note = f"{run.seconds:.1f}s"
        shutil.rmtree(out, ignore_errors=True)

    import torch

    weights = work / "nan.pth"
    state = _tiny_state(seed=0)
    state["fc.weight"][0, 0] = float("nan")
    torch.save(state, weights)
    tmp = bench.tmpdir("nan")
    bench.record("16", "NaN weights", bench.cli(["export", "resnext_tiny", "-w", weights, "-o", out], tmp=tmp), 2,
                 "contain NaN", left=contents(tmp) + size_of(out))
    tmp = bench.tmpdir("require")
    gated = Path(shutil.copytree(inputs["int8"], work / "gated"))
    run = bench.cli(["verify", gated, "--no-latency", "--max-top1-drop", "0.5", "--require-gates"], tmp=tmp)
    bench.record("16", "top-1 gate without evaluation data, --require-gates", run, 1, "--require-gates",
                 left=contents(tmp) + scratch_of(gated))


def _tiny_state(seed: int) -> dict:
    import timm
    import torch

    torch.manual_seed(seed)
    return timm.create_model("resnext50_32x4d", pretrained=False, num_classes=10, **TINY_KWARGS).state_dict()


def disk_cases(bench: Bench, inputs: dict[str, Path]) -> None:
    work = bench.work / "disk-cases"
    work.mkdir()
    model_bytes = (inputs["fp32"] / "model.onnx").stat().st_size
    mount = work / "small"
    if try_tmpfs(mount, model_bytes / 2 / MB):
        try:
            tmp = bench.tmpdir("enospc-model")
            out = mount / "out"
            run = bench.cli(["export", "resnext_tiny", "-w", "random", "-o", out, "--no-verify"], tmp=tmp)
            bench.record("10", "disk full writing model.onnx (tmpfs)", run, 2, "No space left on device", left=contents(tmp) + size_of(out))
        finally:
            unmount(mount)
        if try_tmpfs(mount, model_bytes * 1.5 / MB):
            try:
                tmp = bench.tmpdir("enospc-opt")
                out = mount / "out"
                run = bench.cli(["export", "resnext_tiny", "-w", "random", "-o", out, "--no-verify"], tmp=tmp)
                bench.record("10", "disk full saving the optimized graph (tmpfs)", run, 2, "could not save the optimized graph",
                             left=contents(tmp) + size_of(out))
            finally:
                unmount(mount)
        return
    tmp = bench.tmpdir("efbig-model")  # no tmpfs here: a file size limit fails the same write with EFBIG
    out = work / "out"
    run = bench.cli(["export", "resnext_tiny", "-w", "random", "-o", out, "--no-verify"], tmp=tmp, limit_file_bytes=model_bytes // 2)
    bench.record("10", "file size limit writing model.onnx (EFBIG)", run, 2, "File too large", left=contents(tmp) + size_of(out))


def signal_cases(bench: Bench, inputs: dict[str, Path]) -> None:
    work = bench.work / "signal-cases"
    work.mkdir()

    def int8_export(out: Path, cache: str, *extra: object) -> list[object]:
        return ["export", "resnext_tiny", "-w", "random", "-p", "int8", "--calib-data", inputs["train"], "--calib-size", "60",
                "--calib-method", "entropy", "--cache-dir", work / cache, "-o", out, *extra]

    def during_calibration(out: Path, signum: int) -> Callable[[subprocess.Popen], None]:
        def send(process: subprocess.Popen) -> None:
            staged = out / ".resnext-staging" / "work"
            calibrating = lambda: staged.is_dir() and any(d.name.startswith("resnext-calib.")  # noqa: E731
                                                          for q in staged.iterdir() if q.is_dir() for d in q.iterdir())
            if wait_for(calibrating, process):
                process.send_signal(signum)
        return send

    for signum, code in ((signal.SIGTERM, 143), (signal.SIGINT, 130)):
        out = work / f"out-{signum}"
        tmp = bench.tmpdir(f"sig{signum}")
        run = bench.cli(int8_export(out, f"cache-{signum}", "--no-verify"), tmp=tmp, on_start=during_calibration(out, signum))
        bench.record("11", f"{signal.Signals(signum).name} during calibration", run, code,
                     f"interrupted ({signal.Signals(signum).name})", left=contents(tmp) + size_of(out))

    out = work / "out-kill"
    tmp = bench.tmpdir("kill")
    killed = bench.cli(int8_export(out, "cache-kill", "--no-verify"), tmp=tmp, on_start=during_calibration(out, signal.SIGKILL))
    left_after_kill = scratch_of(out)
    run = bench.cli(int8_export(out, "cache-kill", "--no-verify", "--force"), tmp=tmp)
    row = bench.record("11", "SIGKILL during calibration, then the next run", run, 0, "", left=contents(tmp) + scratch_of(out))
    row.message = f"killed: exit {killed.code}, {left_after_kill:,} B left in staging; next run: exit {run.code}, staging removed"

    out = work / "out-busy"
    tmp = bench.tmpdir("busy")
    second: dict[str, Run] = {}

    def start_second(process: subprocess.Popen) -> None:
        if wait_for(lambda: (out / ".resnext.lock").is_file(), process):
            second["run"] = bench.cli(["export", "resnext_tiny", "-w", "random", "-o", out, "--no-verify"], tmp=tmp)

    first = bench.cli(int8_export(out, "cache-busy"), tmp=tmp, on_start=start_second)  # with verification: it holds the lock long
    run = second.get("run") or Run(-1, "the first export finished before a second could start", 0, 0)
    bench.record("12", f"a second export into a busy --output (the first: exit {first.code})", run, 2, "is in use by pid",
                 left=contents(tmp) + scratch_of(out))

    if shutil.which("strace"):
        trace = work / "strace.txt"
        tmp = bench.tmpdir("strace")
        command = ["strace", "-f", "-qq", "-e", "trace=fsync,rename,renameat,renameat2", "-o", str(trace),
                   sys.executable, str(HERE), "--as-cli", "export", "resnext_tiny", "-w", "random", "-o",
                   str(work / "out-fsync"), "--no-verify"]
        started = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, env=os.environ | {"TMPDIR": str(tmp)})
        lines = trace.read_text().splitlines()
        renames = [line for line in lines if "rename" in line and '.tmp"' in line]
        fsyncs = [line for line in lines if "fsync(" in line and "= 0" in line]
        ok = bool(renames) and len(fsyncs) >= 2 * len(renames)
        bench.rows.append(Row("13", "atomic writes fsync file and folder (strace)", done.returncode, 0,
                              f"{len(renames)} atomic renames, {len(fsyncs)} fsyncs", ok, contents(tmp), 0, 1,
                              f"{time.perf_counter() - started:.1f}s"))


def data_cases(bench: Bench, inputs: dict[str, Path]) -> None:
    from PIL import Image

    work = bench.work / "data-cases"
    work.mkdir()
    wide = (np.linspace(0, 65535, 200 * 160).reshape(160, 200)).astype(np.uint16)
    Image.fromarray(wide).save(work / "gray16.png")
    narrow = ((wide.astype(np.int64) * 255 + 32767) // 65535).astype(np.uint8)
    Image.fromarray(narrow, "L").save(work / "gray8.png")
    tmp = bench.tmpdir("png16")
    run = bench.cli(["predict", inputs["bundle"], work / "gray16.png", work / "gray8.png", "--json"], tmp=tmp)
    try:
        payload = json.loads(run.output[run.output.index("{"):])
        a, b = (p["top"] for p in payload["predictions"])
        same = a == b
    except (ValueError, KeyError):
        same = False
    row = bench.record("14", "16-bit grayscale PNG predicts as its 8-bit version", run, 0, "predictions", left=contents(tmp))
    row.clear = row.clear and same
    row.message = "top-5 of the 16-bit PNG equals the 8-bit PNG's" if same else "16-bit and 8-bit predictions differ"

    bomb_data = work / "bomb-data"
    shutil.copytree(inputs["train"], bomb_data)
    side = 10000  # 100 M pixels: over PIL's 89.5 M limit (a warning), under 2x (an error)
    Image.new("1", (side, side)).save(next(p for p in bomb_data.iterdir()) / "bomb.png")
    tmp = bench.tmpdir("bomb-calib")
    out = work / "bomb-out"
    run = bench.cli(["export", "resnext_tiny", "-w", "random", "-p", "int8", "--calib-data", bomb_data, "--calib-size", "61",
                     "-o", out, "--no-verify"], tmp=tmp)
    row = bench.record("14", "decompression bomb among calibration images", run, 0, "skipped 1 unreadable calibration image",
                       left=contents(tmp) + scratch_of(out))
    row.clear = row.clear and "DecompressionBombWarning" not in run.output
    report = json.loads((out / "report.json").read_text()) if (out / "report.json").is_file() else {}
    reason = ((report.get("calibration") or {}).get("skipped_files") or [{}])[0].get("reason", "")
    row.message = f"skipped: bomb.png ({reason[:60]})"
    row.clear = row.clear and "decompression bomb" in reason


def memory_cases(bench: Bench, inputs: dict[str, Path], full: bool) -> None:
    work = bench.work / "memory-cases"
    work.mkdir()
    count = 10_000 if full else 2_000
    images = write_images(work / "many", count, size=(500, 375), seed=7)  # ImageNet-like sizes: 0.65 MB decoded each
    tmp = bench.tmpdir("predict-many")
    if full:
        out = work / "rx50d"
        calib = work / "calib512"
        write_images(calib, 512, size=(500, 375), seed=8, classes=100)
        export = bench.cli(["export", "resnext50d_32x4d", "-w", "random", "-p", "int8", "--calib-data", calib, "--calib-size",
                            "512", "-o", out, "--no-verify"], tmp=tmp, tiny=False, timeout=3600)
        bench.record("17", "INT8 export resnext50d_32x4d, 512 calibration images", export, 0, "", left=contents(tmp) + scratch_of(out),
                     rss_limit_mb=4096)
        bundle = work / "rx50d.tar.gz"
        bench.cli(["package", out, "-o", bundle], tmp=tmp, tiny=False)
        run = bench.cli(["predict", bundle, *images, "--json"], tmp=tmp, tiny=False, timeout=3600)
        bench.record("17", f"predict resnext50d_32x4d INT8 over {count:,} images", run, 0, '"predictions"', left=contents(tmp),
                     rss_limit_mb=1024)
        return
    run = bench.cli(["predict", inputs["bundle"], *images, "--json"], tmp=tmp)
    bench.record("17", f"predict (tiny) over {count:,} images of 500x375", run, 0, '"predictions"', left=contents(tmp),
                 rss_limit_mb=1024)
    tmp = bench.tmpdir("calib-many")
    out = work / "int8"
    run = bench.cli(["export", "resnext_tiny", "-w", "random", "-p", "int8", "--calib-data", work / "many", "--calib-size",
                     "1000", "-o", out, "--no-verify"], tmp=tmp)
    bench.record("17", "INT8 export (tiny), 1,000 calibration images of 500x375", run, 0, "", left=contents(tmp) + scratch_of(out),
                 rss_limit_mb=2048)


def print_table(rows: list[Row]) -> None:
    print("| item | case | exit (expected) | clear message | bytes left | peak RSS | |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        rss = f"{row.rss_mb:,.0f} MB (< {row.rss_limit_mb:,.0f})" if row.rss_mb else "-"
        message = row.message.replace("|", "/")
        print(f"| {row.item} | {row.case} | {row.code} ({row.expected}) | {'yes' if row.clear else 'NO'}: {message} "
              f"| {row.left:,} | {rss} | {'✅' if row.green else '❌'} |")
    green = sum(row.green for row in rows)
    print(f"\n{green} of {len(rows)} rows green")


FORK_LOG_ENV = "RESNEXT_BENCH_FORK_LOG"


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] in ("--as-cli", "--as-plain-cli"):
        if os.environ.get(FORK_LOG_ENV):  # count forks of this process (issue 18: there must be none)
            os.register_at_fork(before=lambda: Path(os.environ[FORK_LOG_ENV]).open("a").write("fork\n"))
        record_peak_at_exit()
        if sys.argv[1] == "--as-cli":
            register_tiny()
        from resnext_deploy.cli import main as cli_main

        sys.argv = ["resnext-deploy", *sys.argv[2:]]
        cli_main()
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="also the full-scale memory figures (resnext50d_32x4d, ~15 min)")
    parser.add_argument("--work", type=Path, default=None, help="work folder [default: a temporary one, removed]")
    parser.add_argument("--only", default=None, help="comma-separated groups: bundle,export,disk,signal,data,memory,issue18")
    args = parser.parse_args()
    register_tiny()
    from bench_faults_issue18 import issue18_cases

    groups = {"bundle": bundle_cases, "export": export_dir_cases, "disk": disk_cases, "signal": signal_cases,
              "data": data_cases, "memory": None, "issue18": issue18_cases}
    chosen = args.only.split(",") if args.only else list(groups)
    with contextlib.ExitStack() as stack:
        work = args.work or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-faults.")))
        work.mkdir(parents=True, exist_ok=True)
        bench = Bench(work)
        inputs = prepare(bench)
        for name in chosen:
            if name == "memory":
                memory_cases(bench, inputs, args.full)
            else:
                groups[name](bench, inputs)
    print_table(bench.rows)
    sys.exit(0 if all(row.green for row in bench.rows) else 1)


if __name__ == "__main__":
    main()
