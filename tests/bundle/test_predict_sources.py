"""`predict` on what a user has: a bare .onnx of each precision, a graph without our metadata, a bare engine;
`auto` on a bundle runs the engine the bundle records, and says why when it cannot."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import onnx
import pytest
from typer.testing import CliRunner

from resnext_deploy.bundle import package_directory
from resnext_deploy.cli import app
from resnext_deploy.engines.tensorrt.sidecar import SIDECAR_FORMAT, save_engine
from resnext_deploy.files import sha256_file
from resnext_deploy.metadata import read_metadata

runner = CliRunner()


@pytest.fixture(scope="module")
def exports(export_dir: Path, random_int8_export_dir: Path, tmp_path_factory) -> dict[str, Path]:  # type: ignore[no-untyped-def]
    """The tiny model at every precision, FP16 and INT8 made from the session's FP32 export (ONNX Runtime engines)."""
    from resnext_deploy.export import ExportOptions, run_export

    options = ExportOptions(model="resnext_tiny", precision="fp16", backend="onnxruntime", weights="random",
                            output=tmp_path_factory.mktemp("fp16") / "out", fp32_from=export_dir / "model.onnx")
    return {"fp32": export_dir, "fp16": run_export(options, command=["test"])[0], "int8": random_int8_export_dir}


def _predict(*args: str) -> dict:
    result = runner.invoke(app, ["predict", *args, "--json", "--top", "3"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_bare_onnx_predicts_exactly_as_its_bundle(precision: str, exports: dict[str, Path], images: list[Path],
                                                  tmp_path: Path) -> None:
    directory = exports[precision]
    bundle = package_directory(directory, tmp_path / f"tiny-{precision}.tar.gz").path
    artifact = directory / ("model.onnx" if precision == "fp32" else f"model.{precision}.onnx")
    from_bundle = _predict(str(bundle), *map(str, images), "--backend", "onnxruntime")
    bare = _predict(str(artifact), *map(str, images), "--backend", "onnxruntime")
    assert bare["predictions"] == from_bundle["predictions"]
    assert bare["kind"] == "onnx" and from_bundle["kind"] == "bundle" and bare["precision"] == precision
    assert any("RANDOM" in w for w in bare["warnings"])


def test_onnx_without_metadata_needs_model_and_then_matches(exports: dict[str, Path], images: list[Path],
                                                           bundle_file: Path, tmp_path: Path) -> None:
    proto = onnx.load(str(exports["fp32"] / "model.onnx"))
    del proto.metadata_props[:]
    plain = tmp_path / "plain.onnx"
    onnx.save(proto, str(plain))
    refused = runner.invoke(app, ["predict", str(plain), str(images[0])])
    assert refused.exit_code == 2 and "--model" in refused.output and "Traceback" not in refused.output
    bare = _predict(str(plain), *map(str, images), "--model", "resnext_tiny", "--backend", "onnxruntime")
    from_bundle = _predict(str(bundle_file), *map(str, images), "--backend", "onnxruntime")
    assert bare["predictions"] == from_bundle["predictions"]
    assert any("zoo entry resnext_tiny" in w for w in bare["warnings"])
    wrong = runner.invoke(app, ["predict", str(plain), str(images[0]), "--model", "resnext50_32x4d"])
    assert wrong.exit_code == 2 and "outputs 10 classes" in wrong.output


def test_model_option_is_for_bare_files_only(bundle_file: Path, images: list[Path]) -> None:
    result = runner.invoke(app, ["predict", str(bundle_file), str(images[0]), "--model", "resnext_tiny"])
    assert result.exit_code == 2 and "bare .onnx or .engine" in result.output


def _fake_engine(folder: Path, onnx_path: Path) -> Path:
    """A TensorRT engine file and sidecar as a build on a GPU machine writes them (the engine bytes are not real)."""
    shutil.copy(onnx_path, folder / "model.onnx")
    sidecar = {
        "format": SIDECAR_FORMAT, "backend": "tensorrt", "tensorrt_version": "10.9.0", "precision": "fp32",
        "gpu": {"name": "NVIDIA L4", "compute_capability": "8.9"},
        "profile": {"input": {"min": [1, 3, 64, 64], "opt": [1, 3, 64, 64], "max": [8, 3, 64, 64]}},
        "inputs": [{"name": "input", "shape": [-1, 3, 64, 64], "dtype": "float32"}],
        "outputs": [{"name": "logits", "shape": [-1, 10], "dtype": "float32"}],
        "source_onnx": {"path": "model.onnx", "sha256": sha256_file(folder / "model.onnx")},
        "model_metadata": read_metadata(folder / "model.onnx"),
    }
    engine = folder / "model.fp32.engine"
    save_engine(engine, [b"not a real plan"], sidecar)
    return engine


def test_bare_engine_is_read_with_its_sidecar_up_to_the_tensorrt_call(exports: dict[str, Path], images: list[Path],
                                                                      tmp_path: Path) -> None:
    engine = _fake_engine(tmp_path, exports["fp32"] / "model.onnx")
    result = runner.invoke(app, ["predict", str(engine), str(images[0])])
    assert result.exit_code == 2 and "TensorRT backend is not available" in result.output and "hint:" in result.output
    other = runner.invoke(app, ["predict", str(engine), str(images[0]), "--backend", "onnxruntime"])
    assert other.exit_code == 2 and "is a tensorrt engine" in other.output
    verify = runner.invoke(app, ["verify", str(engine)])
    assert verify.exit_code == 2 and "TensorRT backend is not available" in verify.output
    assert (tmp_path / "model.fp32.engine.verify").is_dir()
    (tmp_path / "model.fp32.engine.json").unlink()
    for command in ("predict", "verify"):
        missing = runner.invoke(app, [command, str(engine)] + ([str(images[0])] if command == "predict" else []))
        assert missing.exit_code == 2 and "has no sidecar" in missing.output, missing.output


def test_auto_runs_the_engine_the_bundle_records(exports: dict[str, Path], images: list[Path], tmp_path: Path) -> None:
    bundle = package_directory(exports["int8"], tmp_path / "tiny-int8.tar.gz").path
    recorded = _predict(str(bundle), *map(str, images))
    assert recorded["backend"] == "onnxruntime" and "the engine this bundle records" in recorded["backend_reason"]
    asked = _predict(str(bundle), *map(str, images), "--backend", "onnxruntime")
    assert asked["predictions"] == recorded["predictions"]


def test_auto_falls_back_with_one_line_when_the_recorded_engine_does_not_fit(exports: dict[str, Path],
                                                                             images: list[Path], tmp_path: Path) -> None:
    from resnext_deploy.engines import auto_rule
    from resnext_deploy.report import read_report, write_report

    directory = Path(shutil.copytree(exports["int8"], tmp_path / "elsewhere"))
    sidecar_path = directory / "model.int8.onnxruntime.json"
    sidecar = json.loads(sidecar_path.read_text())
    sidecar["cpu"] = {**sidecar["cpu"], "model": "Some Other CPU", "flags_sha256": "0" * 64}
    sidecar_path.write_text(json.dumps(sidecar))
    report = read_report(directory)  # as an export on that other machine records it
    report.checksums = {**(report.checksums or {}), sidecar_path.name: sha256_file(sidecar_path)}
    write_report(directory, report)
    bundle = package_directory(directory, tmp_path / "elsewhere.tar.gz").path
    result = runner.invoke(app, ["predict", str(bundle), str(images[0])])
    assert result.exit_code == 0, result.output
    expected = auto_rule("int8")[0].name
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("auto:")]
    assert line.startswith(f"auto: {expected}") and "its onnxruntime engine does not fit this machine" in line
    assert "Some Other CPU" in line
    overridden = _predict(str(bundle), str(images[0]), "--backend", "onnxruntime")
    assert overridden["backend"] == "onnxruntime" and overridden["backend_reason"] == "onnxruntime: requested"
