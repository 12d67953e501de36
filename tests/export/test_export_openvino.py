"""`export --backend auto` on an x86-64 CPU with OpenVINO: INT8 picks OpenVINO and its recipe, and says why."""

from __future__ import annotations

import json
import platform

import pytest
from typer.testing import CliRunner

from resnext_deploy.cli import app

pytest.importorskip("openvino", reason="openvino is not installed on this platform")


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="auto prefers OpenVINO on x86-64 only")
def test_auto_int8_export_uses_openvino_and_its_recipe(random_fp32_export_dir, synthetic_imagenet, tmp_path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "int8"
    result = CliRunner().invoke(app, [
        "export", "resnext_tiny", "--precision", "int8", "--fp32-from", str(random_fp32_export_dir / "model.onnx"),
        "--calib-data", str(synthetic_imagenet.train), "--calib-size", "20", "--threads", "1", "--no-verify",
        "--output", str(out),
    ])
    assert result.exit_code == 0, result.output
    assert "auto: openvino (OpenVINO " in result.output
    report = json.loads((out / "report.json").read_text())
    assert report["engine"]["backend"] == "openvino" and report["engine"]["reason"].startswith("auto: openvino")
    assert report["quantization"]["recipe"] == "openvino" and report["quantization"]["excluded_nodes"] == []
    assert report["artifacts"]["engine"] == "model.int8.openvino.blob"
    sidecar = json.loads((out / "model.int8.openvino.json").read_text())
    assert sidecar["config"]["INFERENCE_NUM_THREADS"] == "1" and sidecar["precision"] == "int8"
