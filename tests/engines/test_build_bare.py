"""`resnext-deploy build model.onnx`: an engine from a bare ONNX file, as trtexec and polygraphy take one."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from resnext_deploy.cli import app


def test_build_writes_the_engine_and_sidecar_beside_a_bare_onnx(onnx_copy: Path) -> None:
    result = CliRunner().invoke(app, ["build", str(onnx_copy), "--backend", "onnxruntime", "--threads", "1"])
    assert result.exit_code == 0, result.output
    assert (onnx_copy.parent / f"{onnx_copy.stem}.ort-opt.onnx").is_file()
    assert (onnx_copy.parent / f"{onnx_copy.stem}.onnxruntime.json").is_file()
    assert "built onnxruntime engine" in result.output
