"""bench_mixed.py's reference quantizers: argument checks and venv detection, without the tools' venvs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "bench" / "reference_quantizers.py"
sys.path.insert(0, str(ROOT / "bench"))

import reference_points  # noqa: E402


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=60)


@pytest.fixture
def inputs(tmp_path: Path) -> tuple[Path, Path]:
    fp32 = tmp_path / "model.onnx"
    fp32.write_bytes(b"not read before the arguments are checked")
    calibration = tmp_path / "calibration.npy"
    np.save(calibration, np.zeros((2, 3, 8, 8), dtype=np.float32))
    return fp32, calibration


@pytest.mark.parametrize("case", ["unknown tool", "missing fp32", "missing calibration", "overwrite", "not npy"])
def test_reference_script_refuses_bad_arguments(case: str, inputs: tuple[Path, Path], tmp_path: Path) -> None:
    fp32, calibration = inputs
    tool, output = "nncf", tmp_path / "out.onnx"
    if case == "unknown tool":
        tool = "tensorflow"
    elif case == "missing fp32":
        fp32 = tmp_path / "absent.onnx"
    elif case == "missing calibration":
        calibration = tmp_path / "absent.npy"
    elif case == "overwrite":
        output = fp32
    else:
        calibration = calibration.rename(tmp_path / "calibration.bin")
    done = _run(tool, "--fp32", str(fp32), "--calibration", str(calibration), "--output", str(output))
    assert done.returncode == 2, done.stderr
    assert "error:" in done.stderr
    assert not (tmp_path / "out.scratch").exists()  # refused before any folder or import


def test_parse_tools() -> None:
    assert reference_points.parse_tools("nncf, modelopt") == ["nncf", "modelopt"]
    assert reference_points.parse_tools("none") == reference_points.parse_tools("") == []
    with pytest.raises(SystemExit, match="unknown tool"):
        reference_points.parse_tools("nncf,tflite")


def test_a_tool_without_a_ready_venv_is_left_out(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "nncf" / "bin").mkdir(parents=True)
    (tmp_path / "nncf" / "bin" / "python").touch()  # an install that never finished: no .ready stamp
    assert reference_points.venv_python("nncf", tmp_path) is None
    record = reference_points.quantize("nncf", tmp_path / "model.onnx", tmp_path / "c.npy", tmp_path / "refs", tmp_path)
    assert record is None
    assert "nncf int8: left out: no ready venv" in capsys.readouterr().out
