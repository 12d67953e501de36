"""A normal run's terminal output: no engine INFO logs (they are -v's), one line on how each side started."""

from __future__ import annotations

import shutil
from pathlib import Path

from typer.testing import CliRunner

from resnext_deploy.cli import app
from resnext_deploy.verification.outputs import COLD_START_NOTE

runner = CliRunner()


def _verify(export_dir: Path, val: Path, *flags: str) -> str:
    args = [*flags, "verify", str(export_dir), "--eval-data", str(val), "--eval-size", "20", "--no-latency"]
    result = runner.invoke(app, args)
    assert result.exit_code in (0, 1), result.output
    return result.output


def test_default_output_has_no_engine_logs_and_says_once_what_a_cold_start_is(random_int8_export_dir: Path,  # type: ignore[no-untyped-def]
                                                                            synthetic_imagenet, tmp_path: Path) -> None:
    export_dir = Path(shutil.copytree(random_int8_export_dir, tmp_path / "export"))
    (export_dir / "model.onnxruntime.json").unlink(missing_ok=True)  # the FP32 baseline then starts cold
    output = _verify(export_dir, synthetic_imagenet.val)
    assert "cold start from" not in output and "INFO" not in output
    assert "images (images)" not in output and f"20 images from {synthetic_imagenet.val}" in output
    (start,) = [line for line in output.splitlines() if line.strip().startswith("start:")]
    assert "target saved engine" in start and "baseline cold start" in start
    assert output.count(COLD_START_NOTE) == 1
    verbose = _verify(export_dir, synthetic_imagenet.val, "-v")
    assert "cold start from model.onnx" in verbose
