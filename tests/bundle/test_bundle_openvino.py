"""Bundles with an OpenVINO engine: the target recorded, rebuilt on another CPU, used by predict, served by Triton."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from resnext_deploy.bundle import build_bundle, open_bundle, package_directory, predict_images, safe_extract
from resnext_deploy.bundle.manifest import MANIFEST_NAME, file_record, targets_of, verify_bundle
from resnext_deploy.files import write_json

pytest.importorskip("openvino", reason="openvino is not installed on this platform")

runner = CliRunner()


@pytest.fixture(scope="module")
def ov_bundle(ov_export: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The OpenVINO export packed once for this module (read-only: the tests unpack it)."""
    return package_directory(ov_export, tmp_path_factory.mktemp("ov-bundle") / "tiny-ov.tar.gz").path


def _as_if_compiled_elsewhere(directory: Path) -> None:
    """Make the bundle's OpenVINO sidecar record another CPU, re-listed in the manifest as a bundle made there would be."""
    sidecar = directory / "model.fp16.openvino.json"
    record = json.loads(sidecar.read_text())
    record["cpu"] = {"machine": "x86_64", "system": "Linux", "model": "Intel Xeon elsewhere", "flags_sha256": "0" * 64}
    write_json(sidecar, record)
    manifest = json.loads((directory / MANIFEST_NAME).read_text())
    names = [f["path"] for f in manifest["files"]]
    manifest["files"] = [file_record(directory, name) for name in names]
    manifest["targets"] = targets_of(directory, names)
    write_json(directory / MANIFEST_NAME, manifest)
    verify_bundle(directory)


def test_package_records_the_openvino_target(ov_bundle: Path, cli) -> None:
    with open_bundle(ov_bundle) as opened:
        targets = {t["backend"]: t for t in opened.manifest["targets"]}
        names = {f["path"] for f in opened.manifest["files"]}
    target = targets["openvino"]
    assert {"model.fp16.openvino.blob", "model.fp16.openvino.json"} <= names
    assert target["artifact"] == "model.fp16.openvino.blob" and target["precision"] == "fp16"
    assert target["config"]["INFERENCE_PRECISION_HINT"] == target["inference_precision"]
    assert target["openvino_version"] and target["cpu"]["flags_sha256"]
    result = runner.invoke(cli, ["inspect", str(ov_bundle)])
    assert result.exit_code == 0 and "OpenVINO " in result.output and "computes in" in result.output


def test_build_on_another_cpu_recompiles_and_predict_uses_it(ov_bundle: Path, tmp_path: Path, images, cli) -> None:
    directory = safe_extract(ov_bundle, tmp_path / "unpacked")
    assert build_bundle(directory, "openvino").action == "reused"
    _as_if_compiled_elsewhere(directory)
    result = build_bundle(directory, "openvino")
    assert result.action == "built" and "another CPU (Intel Xeon elsewhere" in result.reason
    assert result.artifact == "model.fp16.openvino.blob"
    manifest = verify_bundle(directory).manifest
    (target,) = [t for t in manifest["targets"] if t["backend"] == "openvino"]
    assert target["cpu"]["model"] != "Intel Xeon elsewhere"
    with open_bundle(directory) as opened:
        predicted = predict_images(opened, images[:2], top=3, backend="openvino")
    assert predicted.backend == "openvino" and len(predicted.predictions) == 2
    cli_result = runner.invoke(cli, ["predict", str(directory), str(images[0]), "--json", "--backend", "openvino"])
    assert cli_result.exit_code == 0, cli_result.output
    assert json.loads(cli_result.stdout)["backend"] == "openvino"


def test_predict_from_another_cpus_bundle_compiles_in_memory(ov_bundle: Path, tmp_path: Path, images) -> None:
    directory = safe_extract(ov_bundle, tmp_path / "unpacked")
    _as_if_compiled_elsewhere(directory)
    before = sorted(p.name for p in directory.iterdir())
    with open_bundle(directory) as opened:
        predicted = predict_images(opened, images[:1], top=1, backend="openvino")
    assert predicted.backend == "openvino"
    assert sorted(p.name for p in directory.iterdir()) == before  # predict never rewrites a bundle


def test_triton_repository_for_the_openvino_backend(ov_export: Path, tmp_path: Path, cli) -> None:
    from google.protobuf import text_format

    from tests.bundle.test_bundle_triton import model_config_pb2

    repo = tmp_path / "repo"
    result = runner.invoke(cli, ["package", str(ov_export), "--output", str(repo), "--format", "triton"])
    assert result.exit_code == 0, result.output
    model_dir = repo / "resnext_tiny_fp16"
    assert (model_dir / "1" / "model.onnx").read_bytes() == (ov_export / "model.fp16.onnx").read_bytes()
    schema = model_config_pb2()
    config = text_format.Parse((model_dir / "config.pbtxt").read_text(), schema.ModelConfig())
    assert config.backend == "openvino" and config.platform == "" and config.default_model_filename == "model.onnx"
    assert {k: v.string_value for k, v in config.parameters.items()} == {
        "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": "1", "HINT_BF16": "YES"}
    assert config.instance_group[0].kind == schema.ModelInstanceGroup.KIND_CPU
    (inp,) = config.input
    assert (inp.name, inp.data_type, list(inp.dims)) == ("input", schema.TYPE_FP32, [3, 64, 64])
    shutil.rmtree(repo)
    from resnext_deploy.bundle.triton import package_triton

    onnx_served = package_triton(ov_export, repo, backend="onnxruntime")
    assert onnx_served.platform == "onnxruntime_onnx"


def test_verify_runs_the_target_on_openvino(export_dir: Path, tmp_path: Path) -> None:
    from resnext_deploy.verification import VerifyOptions, verify_directory

    directory = Path(shutil.copytree(export_dir, tmp_path / "export"))
    outcome = verify_directory(directory, VerifyOptions(backend="openvino", batch_sizes=(1,), iterations=2, duration=0.0,
                                                        warmup_ms=0.0, random_eval_size=4, plot=False, progress=False))
    verification = outcome.report.verification
    assert verification is not None
    assert verification.backend == "openvino" and verification.baseline["backend"] == "onnxruntime"
    assert verification.target["start_mode"] == "compiled"  # an ONNX Runtime export holds no OpenVINO engine
    # FP32 on both sides: OpenVINO compiles strictly in f32
    assert verification.accuracy["min_cosine"] > 0.99999
