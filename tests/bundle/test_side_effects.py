"""Our process belongs to our user: `predict` and an OpenVINO build write nothing under $HOME (no telemetry files
of OpenVINO or ONNX Runtime), fork nothing, and SIGTERM ends `predict` on OpenVINO with its whole process group."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from resnext_deploy.bundle import package_directory

pytest.importorskip("openvino", reason="openvino is not installed on this platform")

# The CLI in a fresh interpreter with a fork hook installed before anything of ours (or a library) loads.
RUNNER = """
import os, sys
log = open(sys.argv[1], "a")
os.register_at_fork(before=lambda: (log.write("fork\\n"), log.flush()))
from resnext_deploy.cli import main
sys.argv = ["resnext-deploy", *sys.argv[2:]]
main()
"""
GENEROUS = 120  # seconds: only a guard against a hang, never a figure


def _clean_env(home: Path) -> dict[str, str]:
    """This environment with an empty HOME, the telemetry switches as a user would have them (ORT's set to 0, no CI)."""
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "TF_BUILD", "JENKINS_URL", "XDG_CACHE_HOME")}
    return env | {"HOME": str(home), "ORT_DISABLE_TELEMETRY": "0"}


def _cli(home: Path, log: Path, *args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", RUNNER, str(log), *map(str, args)], env=_clean_env(home),
                          capture_output=True, text=True, timeout=GENEROUS)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    folder = tmp_path / "home"
    folder.mkdir()
    return folder


@pytest.mark.slow  # three CLI runs in fresh interpreters
def test_predict_and_an_openvino_build_leave_home_empty_and_never_fork(ov_export: Path, images, home: Path,
                                                                        tmp_path: Path) -> None:
    log = tmp_path / "forks.log"
    bundle = package_directory(ov_export, tmp_path / "tiny.tar.gz").path
    predicted = _cli(home, log, "predict", bundle, images[0], "--backend", "openvino")
    assert predicted.returncode == 0, predicted.stderr
    predicted_ort = _cli(home, log, "predict", bundle, images[0], "--backend", "onnxruntime")
    assert predicted_ort.returncode == 0, predicted_ort.stderr
    bare = tmp_path / "bare" / "model.fp16.onnx"
    bare.parent.mkdir()
    shutil.copyfile(ov_export / "model.fp16.onnx", bare)
    built = _cli(home, log, "build", bare, "--backend", "openvino")
    assert built.returncode == 0, built.stderr
    assert (bare.parent / "model.fp16.openvino.blob").is_file()
    assert sorted(p.relative_to(home).as_posix() for p in home.rglob("*")) == []  # no ~/intel, no ~/.cache/Microsoft
    assert not log.exists() or log.read_text() == ""  # no fork in our process


def test_sigterm_ends_predict_on_openvino_with_its_whole_process_group(ov_export: Path, home: Path, tmp_path: Path) -> None:
    folder = tmp_path / "images"
    folder.mkdir()
    pixels = (np.random.default_rng(0).random((1200, 1600, 3)) * 255).astype(np.uint8)
    Image.fromarray(pixels).save(folder / "0.jpg", quality=90)
    for index in range(1, 300):  # enough work that the signal comes while predict runs
        os.link(folder / "0.jpg", folder / f"{index}.jpg")
    bundle = package_directory(ov_export, tmp_path / "tiny.tar.gz").path
    process = subprocess.Popen([sys.executable, "-m", "resnext_deploy", "predict", str(bundle),
                                *sorted(map(str, folder.iterdir())), "--backend", "openvino"],
                               env=_clean_env(home), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    maps = Path(f"/proc/{process.pid}/maps")
    deadline = time.monotonic() + GENEROUS
    while process.poll() is None and time.monotonic() < deadline:  # wait until OpenVINO is loaded in the process
        if maps.is_file() and "libopenvino" in maps.read_text(errors="replace"):
            break
        time.sleep(0.05)
    assert process.poll() is None, "predict ended before OpenVINO was loaded"
    os.killpg(process.pid, signal.SIGTERM)
    try:
        _, stderr = process.communicate(timeout=GENEROUS)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        raise AssertionError("predict did not end on SIGTERM") from None
    assert process.returncode in (143, -signal.SIGTERM), stderr
    for _ in range(GENEROUS * 10):  # every process of the group is gone, not only the leader
        try:
            os.killpg(process.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        os.killpg(process.pid, signal.SIGKILL)
        raise AssertionError("a process of predict's group outlived SIGTERM")
