"""One export, several INT8 targets: an artifact per backend recipe, and TensorRT refusing the CPU one up front."""

from __future__ import annotations

import shlex
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from resnext_deploy.cli import app
from resnext_deploy.engines import BuildOptions
from resnext_deploy.engines.tensorrt import TensorRTBackend
from resnext_deploy.engines.tensorrt.artifact import check_tensorrt_artifact
from resnext_deploy.errors import InputError
from resnext_deploy.metadata import read_metadata


def _export(root: Path, fp32: Path, out: Path, targets: tuple[str, ...], cache: Path) -> Path:
    from resnext_deploy.export import CalibrationOptions, ExportOptions, run_export

    # minmax keeps the fixtures fast; `auto` picks one method for every target (test_one_method_serves_every_target);
    # the FP32 model is the session's random-weight export, as `--fp32-from` reuses it
    calibration = CalibrationOptions(data=root, size=20, method="minmax", targets=targets, cache_dir=cache)
    options = ExportOptions(model="resnext_tiny", precision="int8", backend="onnxruntime", weights="random", output=out,
                            calibration=calibration, fp32_from=fp32)
    return run_export(options, command=["test"])[0]


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("targets-cache")


@pytest.fixture(scope="module")
def multi_target(synthetic_imagenet, random_fp32_export_dir, tmp_path_factory, cache: Path) -> Path:  # type: ignore[no-untyped-def]
    """An INT8 export for the CPU fleet and for TensorRT devices, made in one run on this CPU machine."""
    return _export(synthetic_imagenet.root, random_fp32_export_dir / "model.onnx", tmp_path_factory.mktemp("multi") / "int8",
                   ("onnxruntime", "tensorrt"), cache)


@pytest.fixture(scope="module")
def cpu_only(synthetic_imagenet, random_fp32_export_dir, tmp_path_factory, cache: Path) -> Path:  # type: ignore[no-untyped-def]
    """An INT8 export made with `--recipe auto` on a CPU machine: the onnxruntime recipe only."""
    return _export(synthetic_imagenet.root, random_fp32_export_dir / "model.onnx", tmp_path_factory.mktemp("cpu") / "int8",
                   (), cache)


def test_one_export_makes_one_artifact_per_target(multi_target: Path) -> None:
    from resnext_deploy.report import read_report

    report = read_report(multi_target)
    assert report.artifacts.recipes == {"onnxruntime": "model.int8.onnx", "tensorrt": "model.int8.tensorrt.onnx"}
    assert report.artifacts.int8 == "model.int8.onnx" and report.quantization.recipe == "onnxruntime"
    own, trt = report.targets["onnxruntime"].quantization, report.targets["tensorrt"].quantization
    assert own.stats_cache_hit is False and trt.stats_source == "cache" and trt.stats_key == own.stats_key
    assert read_metadata(multi_target / "model.int8.onnx")["calibration"]["recipe"] == "onnxruntime"
    meta = read_metadata(multi_target / "model.int8.tensorrt.onnx")["calibration"]
    assert meta["recipe"] == "tensorrt" and meta["float_regions"] == "fp16"
    assert report.engine.artifact["source_onnx"].endswith("model.int8.onnx")  # the ORT engine: its own recipe
    assert check_tensorrt_artifact(multi_target / "model.int8.tensorrt.onnx").parsable
    with pytest.raises(InputError):
        check_tensorrt_artifact(multi_target / "model.int8.onnx")


def test_one_method_serves_every_target() -> None:
    from resnext_deploy.export import CalibrationOptions
    from resnext_deploy.export.preflight import int8_method as _int8_method

    assert _int8_method(CalibrationOptions(), ["onnxruntime"]) == "minmax"
    assert _int8_method(CalibrationOptions(), ["tensorrt"]) == "percentile"
    assert _int8_method(CalibrationOptions(), ["onnxruntime", "tensorrt"]) == "percentile"  # one statistics pass
    assert _int8_method(CalibrationOptions(method="entropy"), ["onnxruntime", "tensorrt"]) == "entropy"


def test_tensorrt_refuses_the_cpu_recipe_before_tensorrt_is_called(cpu_only: Path, synthetic_imagenet) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InputError, match="onnxruntime recipe and TensorRT cannot parse it") as info:
        TensorRTBackend().build(cpu_only / "model.int8.onnx", BuildOptions())
    message = info.value.message
    assert "use UINT8" in message and "non-zero zero points" in message and "use INT32" in message
    command = (
        f"resnext-deploy export resnext_tiny --weights random --precision int8 --targets onnxruntime,tensorrt "
        f"--calib-data {synthetic_imagenet.root} --calib-manifest {cpu_only / 'calibration' / 'manifest.json'} "
        f"--output {cpu_only} --force"
    )
    assert command in (info.value.hint or "")


@pytest.mark.slow
def test_verify_on_tensorrt_exits_2_with_the_command_and_the_command_works(cpu_only: Path, tmp_path: Path) -> None:
    from resnext_deploy.report import read_report
    from resnext_deploy.verification.runners import target_side

    directory = Path(shutil.copytree(cpu_only, tmp_path / "int8"))
    result = CliRunner().invoke(app, ["verify", str(directory), "--backend", "tensorrt", "--no-latency"])
    assert result.exit_code == 2, result.output
    assert "model.int8.onnx was quantized with the onnxruntime recipe" in " ".join(result.output.split())
    with pytest.raises(InputError) as info:  # the same refusal, read unwrapped
        target_side(directory, read_report(directory), "tensorrt", None)
    command = (info.value.hint or "").split(": ", 1)[1]
    args = shlex.split(command)
    assert args[:2] == ["resnext-deploy", "export"] and "--targets" in args and str(directory) in args
    made = CliRunner().invoke(app, [*args[1:], "--no-verify"])
    assert made.exit_code == 0, made.output
    assert check_tensorrt_artifact(directory / "model.int8.tensorrt.onnx").parsable
    after = CliRunner().invoke(app, ["verify", str(directory), "--backend", "tensorrt", "--no-latency"])
    assert after.exit_code == 2 and "TensorRT backend is not available" in after.output  # the right artifact, no GPU here


def test_bundle_builds_each_backend_from_its_own_artifact(multi_target: Path, cpu_only: Path, tmp_path: Path) -> None:
    from resnext_deploy.bundle import open_bundle, package_directory

    bundle = package_directory(multi_target, tmp_path / "multi.tar.gz").path
    with open_bundle(bundle) as opened:
        assert opened.manifest["artifacts"]["recipes"]["tensorrt"] == "model.int8.tensorrt.onnx"
        assert opened.artifact_for("tensorrt").name == "model.int8.tensorrt.onnx"
        assert opened.artifact_for("onnxruntime").name == "model.int8.onnx"
    runner = CliRunner()
    reused = runner.invoke(app, ["build", str(bundle), "--backend", "onnxruntime"])
    assert reused.exit_code == 0 and "reused" in reused.output, reused.output
    on_gpu_only = runner.invoke(app, ["build", str(bundle), "--backend", "tensorrt"])
    assert on_gpu_only.exit_code == 2 and "TensorRT backend is not available" in on_gpu_only.output
    cpu_bundle = package_directory(cpu_only, tmp_path / "cpu.tar.gz").path
    refused = runner.invoke(app, ["build", str(cpu_bundle), "--backend", "tensorrt"])
    assert refused.exit_code == 2 and "onnxruntime recipe" in refused.output and "--targets" in refused.output
