"""OpenVINO backend: compiled model exported with a sidecar, checked on load; precisions, faults, auto rule."""

from __future__ import annotations

import json
import logging
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from engines_testlib import batch

from resnext_deploy.engines import BuildOptions, auto_rule, resolve_backend
from resnext_deploy.errors import InputError, NotAvailableError
from resnext_deploy.files import sha256_file

ov = pytest.importorskip("openvino", reason="openvino is not installed on this platform")

from resnext_deploy.engines.openvino import OpenVinoBackend  # noqa: E402
from resnext_deploy.engines.openvino.environment import capabilities, reduced_float_precision  # noqa: E402

BACKEND = OpenVinoBackend()
OPTIONS = BuildOptions(threads=1)


def _ort(onnx_path: Path, feed: dict[str, np.ndarray]) -> np.ndarray:
    import onnxruntime as ort

    return ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"]).run(["logits"], feed)[0]


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(np.float64), b.astype(np.float64)
    return float(np.min((a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))))


def _edit(path: Path, **changes: object) -> None:
    sidecar = json.loads(path.read_text())
    sidecar.update(changes)
    path.write_text(json.dumps(sidecar))


@pytest.fixture(scope="module")
def fp16_onnx(tiny_onnx: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from resnext_deploy.calibration.fp16 import convert_fp16

    return convert_fp16(tiny_onnx, tmp_path_factory.mktemp("fp16") / "model.fp16.onnx").path


def test_fp32_builds_strict_f32_and_loads_from_the_exported_model(onnx_copy: Path) -> None:
    artifact = BACKEND.build(onnx_copy, OPTIONS)
    assert artifact.path.name == "model.openvino.blob" and artifact.sidecar.name == "model.openvino.json"
    sidecar = json.loads(artifact.sidecar.read_text())
    assert sidecar == artifact.metadata and sidecar["backend"] == "openvino" and sidecar["precision"] == "fp32"
    assert sidecar["config"] == {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": "1",
                                 "INFERENCE_NUM_THREADS": "1"}
    assert sidecar["effective"]["INFERENCE_PRECISION_HINT"] == "f32"
    assert sidecar["effective"]["INFERENCE_NUM_THREADS"] == "1"
    assert sidecar["source_onnx"]["sha256"] == sha256_file(onnx_copy)
    assert sidecar["compiled_model"]["sha256"] == sha256_file(artifact.path)
    assert sidecar["openvino_version"] == ov.get_version() and set(sidecar["cpu"]) >= {"model", "flags_sha256"}
    assert not list(onnx_copy.parent.glob(".*.tmp"))
    feed = batch(3)
    for handle in (onnx_copy, artifact, artifact.sidecar, artifact.path):
        runner = BACKEND.load(handle, OPTIONS)
        assert runner.start_mode == "cached", runner.start_reason
    with runner:
        assert runner.inference_precision == "f32"  # the blob alone would come back at OpenVINO's default
        assert runner.input_specs["input"].shape == (-1, 3, 32, 32) and runner.output_names == ["logits"]
        out = runner.infer(feed)["logits"]
    # strict f32: only summation order differs from ONNX Runtime
    np.testing.assert_allclose(out, _ort(onnx_copy, feed), rtol=1e-4, atol=1e-4)


def test_fp16_compiles_at_the_cpus_reduced_float_precision(fp16_onnx: Path, tiny_onnx: Path, tmp_path: Path) -> None:
    artifact = BACKEND.build(fp16_onnx, OPTIONS, output_dir=tmp_path)
    reduced = reduced_float_precision(capabilities())
    assert artifact.metadata["precision"] == "fp16" and artifact.metadata["reduced_float_precision"] == reduced
    assert artifact.metadata["inference_precision"] == (reduced or "f32")
    feed = batch(4)
    with BACKEND.load(artifact, OPTIONS) as runner:
        assert runner.start_mode == "cached"
        out = runner.infer(feed)["logits"]
    # bf16 keeps 8 mantissa bits: logits stay close in direction to the FP32 model's on this 6-block net
    assert _cosine(out, _ort(tiny_onnx, feed)) > 0.999


def test_int8_qdq_graph_matches_onnx_runtime_on_the_same_graph(tiny_int8_onnx: Path, tmp_path: Path) -> None:
    artifact = BACKEND.build(tiny_int8_onnx, OPTIONS, output_dir=tmp_path)
    assert artifact.path.name == "model.int8.openvino.blob" and artifact.metadata["precision"] == "int8"
    feed = batch(4)
    with BACKEND.load(artifact, OPTIONS) as runner:
        out = runner.infer(feed)["logits"]
    # both run the same int8 arithmetic; they differ only in rounding of requantized activations
    assert _cosine(out, _ort(tiny_int8_onnx, feed)) > 0.99


def test_sidecar_from_another_openvino_or_cpu_recompiles_and_logs_why(onnx_copy: Path, caplog) -> None:
    artifact = BACKEND.build(onnx_copy, OPTIONS)
    _edit(artifact.sidecar, openvino_version="2020.1.0-0000")
    with caplog.at_level(logging.WARNING, logger="resnext_deploy.engines.openvino"):
        runner = BACKEND.load(onnx_copy, OPTIONS)
    assert runner.start_mode == "compiled" and "OpenVINO 2020.1.0-0000 compiled it" in runner.start_reason
    assert "recompiling model.onnx: OpenVINO 2020.1.0-0000" in caplog.text
    artifact = BACKEND.build(onnx_copy, OPTIONS)
    _edit(artifact.sidecar, cpu={"machine": "x86_64", "model": "Other CPU", "flags_sha256": "0"})
    runner = BACKEND.load(onnx_copy, OPTIONS)
    assert runner.start_mode == "compiled" and "another CPU (Other CPU" in runner.start_reason
    with runner:
        np.testing.assert_allclose(runner.infer(batch(1))["logits"], _ort(onnx_copy, batch(1)), rtol=1e-4, atol=1e-4)


def test_truncated_or_foreign_blob_recompiles(onnx_copy: Path, caplog) -> None:
    artifact = BACKEND.build(onnx_copy, OPTIONS)
    data = artifact.path.read_bytes()
    artifact.path.write_bytes(data[: len(data) // 2])
    with caplog.at_level(logging.WARNING, logger="resnext_deploy.engines.openvino"):
        runner = BACKEND.load(onnx_copy, OPTIONS)
    assert runner.start_mode == "compiled" and "(truncated)" in runner.start_reason
    assert "truncated" in caplog.text
    # a damaged blob whose sidecar was rewritten to match it: OpenVINO's own import fails, we recompile
    damaged = b"\0" * 64 + data[64:]
    artifact.path.write_bytes(damaged)
    _edit(artifact.sidecar, compiled_model={"path": artifact.path.name, "sha256": sha256_file(artifact.path), "size": len(damaged)})
    runner = BACKEND.load(onnx_copy, OPTIONS)
    assert runner.start_mode == "compiled" and "cannot import" in runner.start_reason
    artifact.path.unlink()
    assert "missing" in BACKEND.load(onnx_copy, OPTIONS).start_reason


def test_sidecar_of_another_model_is_an_error_naming_the_rebuild(onnx_copy: Path, tiny_int8_onnx: Path) -> None:
    artifact = BACKEND.build(onnx_copy, OPTIONS)
    onnx_copy.write_bytes(tiny_int8_onnx.read_bytes())
    with pytest.raises(InputError, match="compiled from another ONNX file than model.onnx") as info:
        BACKEND.load(onnx_copy, OPTIONS)
    assert f"resnext-deploy build {onnx_copy} --backend openvino" in (info.value.hint or "")
    assert "resnext-deploy build BUNDLE --backend openvino" in (info.value.hint or "")
    artifact.sidecar.write_text('{"format": "resnext-deploy/onnxruntime-engine/1"}')
    with pytest.raises(InputError, match="is not an OpenVINO engine sidecar"):
        BACKEND.load(onnx_copy, OPTIONS)
    artifact.sidecar.write_text("{truncated")
    with pytest.raises(InputError, match="not valid JSON"):
        BACKEND.load(onnx_copy, OPTIONS)


def test_no_sidecar_compiles_in_memory_and_writes_nothing(onnx_copy: Path) -> None:
    runner = BACKEND.load(onnx_copy, OPTIONS)
    assert runner.start_mode == "compiled" and "no compiled model" in runner.start_reason
    assert sorted(p.name for p in onnx_copy.parent.iterdir()) == ["model.onnx"]


def test_truncated_onnx_is_an_input_error(onnx_copy: Path) -> None:
    onnx_copy.write_bytes(onnx_copy.read_bytes()[:1000])
    with pytest.raises(InputError, match="OpenVINO cannot read") as info:
        BACKEND.build(onnx_copy, OPTIONS)
    assert "re-export" in (info.value.hint or "")
    assert sorted(p.name for p in onnx_copy.parent.iterdir()) == ["model.onnx"]


def test_auto_prefers_openvino_for_int8_and_fp16_on_x86_only() -> None:
    assert auto_rule("int8", machine="x86_64")[0].name == "openvino"
    assert auto_rule("fp16", machine="x86_64")[0].name == "openvino"
    backend, reason = auto_rule("fp32", machine="x86_64")
    assert backend.name == "onnxruntime" and "openvino not preferred at fp32" in reason
    backend, reason = auto_rule("int8", machine="aarch64")
    assert backend.name == "onnxruntime" and "openvino measured only on x86_64/AMD64" in reason


def test_without_openvino_auto_falls_back_and_named_backend_exits_2(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "openvino", None)  # `import openvino` fails like a missing install
    backend, reason = auto_rule("int8", machine="x86_64")
    assert backend.name == "onnxruntime" and "openvino not installed" in reason and "\n" not in reason
    with pytest.raises(NotAvailableError) as info:
        resolve_backend("openvino")
    assert info.value.exit_code == 2 and "pip install openvino" in (info.value.hint or "")


def test_cli_backend_openvino_without_openvino_exits_2_naming_the_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import typer
    from typer.testing import CliRunner

    from resnext_deploy.cli.export import export

    app = typer.Typer()
    app.command()(export)
    app.command("noop")(lambda: None)
    monkeypatch.setitem(sys.modules, "openvino", None)
    result = CliRunner().invoke(app, ["export", "resnext50d_32x4d", "--backend", "openvino", "--weights", "random",
                                      "--output", str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    assert "OpenVINO backend is not available: openvino not installed" in result.output
    assert "pip install openvino" in result.output
    assert not (tmp_path / "out").exists()


def test_build_into_another_folder_keeps_the_source_relative(onnx_copy: Path, tmp_path: Path) -> None:
    out = tmp_path / "engines"
    artifact = BACKEND.build(onnx_copy, OPTIONS, output_dir=out)
    assert artifact.path.parent == out and artifact.metadata["source_onnx"]["path"] == "../model.onnx"
    assert BACKEND.load(artifact, OPTIONS).start_mode == "cached"
    with pytest.raises(InputError, match="may only name 'model.onnx' beside it"):  # a sidecar alone names only its folder
        BACKEND.load(artifact.sidecar, OPTIONS)
    shutil.rmtree(out)
