"""`package --format triton`: the model repository layout and a config.pbtxt that Triton's schema parses."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

runner = CliRunner()


def model_config_pb2():  # type: ignore[no-untyped-def]
    """Triton's ModelConfig schema from tritonclient; without the grpc extra, load the module file alone.

    ``tritonclient.grpc/__init__`` needs grpcio, but ``model_config_pb2.py`` only needs protobuf.
    """
    import importlib.util

    try:
        from tritonclient.grpc import model_config_pb2 as module

        return module
    except (ImportError, RuntimeError):
        spec = importlib.util.find_spec("tritonclient")
        if spec is None or not spec.submodule_search_locations:
            pytest.skip("tritonclient is not installed (pip install 'resnext-deploy[test]')")
        path = Path(next(iter(spec.submodule_search_locations))) / "grpc" / "model_config_pb2.py"
        loaded = importlib.util.spec_from_file_location("triton_model_config_pb2", path)
        assert loaded is not None and loaded.loader is not None
        module = importlib.util.module_from_spec(loaded)
        loaded.loader.exec_module(module)
        return module


def test_triton_repository_parses_against_model_config_schema(export_dir: Path, tmp_path: Path, cli) -> None:
    from google.protobuf import text_format

    repo = tmp_path / "repo"
    result = runner.invoke(cli, ["package", str(export_dir), "--output", str(repo), "--format", "triton"])
    assert result.exit_code == 0, result.output
    model_dir = repo / "resnext_tiny_fp32"
    assert (model_dir / "1" / "model.onnx").read_bytes() == (export_dir / "model.onnx").read_bytes()
    assert len((model_dir / "labels.txt").read_text().splitlines()) == 10
    schema = model_config_pb2()
    config = text_format.Parse((model_dir / "config.pbtxt").read_text(), schema.ModelConfig())
    assert config.name == "resnext_tiny_fp32" and config.platform == "onnxruntime_onnx"
    assert config.max_batch_size == 32
    (inp,), (out,) = config.input, config.output
    assert (inp.name, inp.data_type, list(inp.dims)) == ("input", schema.TYPE_FP32, [3, 64, 64])
    assert inp.format == schema.ModelInput.FORMAT_NCHW
    assert (out.name, out.data_type, list(out.dims)) == ("logits", schema.TYPE_FP32, [10])
    again = runner.invoke(cli, ["package", str(export_dir), "--output", str(repo), "--format", "triton"])
    assert again.exit_code == 2 and "already exists" in again.output
    assert runner.invoke(cli, ["package", str(export_dir), "-o", str(repo), "--format", "triton", "--force"]).exit_code == 0


def test_triton_plan_without_engine_is_input_error(export_dir: Path, tmp_path: Path, cli) -> None:
    result = runner.invoke(cli, ["package", str(export_dir), "-o", str(tmp_path / "r"), "--format", "triton", "--plan"])
    assert result.exit_code == 2 and "no TensorRT engine" in result.output


@pytest.mark.parametrize("max_batch", [1, 8])
def test_triton_config_text_max_batch(export_dir: Path, tmp_path: Path, max_batch: int) -> None:
    from google.protobuf import text_format

    from resnext_deploy.bundle.triton import package_triton

    result = package_triton(export_dir, tmp_path / "repo", max_batch_size=max_batch, model_name="m")
    assert text_format.Parse(result.config, model_config_pb2().ModelConfig()).max_batch_size == max_batch


def test_triton_model_name_and_max_batch_size_from_the_cli(export_dir: Path, tmp_path: Path, cli) -> None:
    from google.protobuf import text_format

    repo = tmp_path / "repo"
    result = runner.invoke(cli, ["package", str(export_dir), "--output", str(repo), "--format", "triton",
                                 "--model-name", "rx_edge", "--max-batch-size", "4"])
    assert result.exit_code == 0, result.output
    config = text_format.Parse((repo / "rx_edge" / "config.pbtxt").read_text(), model_config_pb2().ModelConfig())
    assert config.name == "rx_edge" and config.max_batch_size == 4


def _plan_bundle(root: Path, **target: object) -> tuple[Path, dict[str, object]]:
    """A bundle folder holding a TensorRT plan as `package` records it (the plan's bytes are not read by Triton here)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "model.int8.engine").write_bytes(b"plan")
    (root / "classes.txt").write_text("".join(f"class {i}\n" for i in range(10)))
    (root / "preprocess.json").write_text("{}")
    record = {"backend": "tensorrt", "artifact": "model.int8.engine", "precision": "int8", "tensorrt_version": "10.13.3.9",
              "profile": {"input": {"min": [1, 3, 64, 64], "opt": [8, 3, 64, 64], "max": [8, 3, 64, 64]}},
              "version_compatible": False, **target}
    manifest = {"model": {"name": "resnext_tiny"}, "precision": "int8",
                "input": {"name": "input", "dtype": "float32", "shape": [-1, 3, 64, 64]},
                "output": {"name": "logits", "dtype": "float32", "shape": [-1, 10]},
                "artifacts": {"model": "model.int8.onnx", "classes": "classes.txt", "preprocess": "preprocess.json"},
                "targets": [record]}
    return root, manifest


def test_a_version_compatible_plan_is_served_with_the_backend_config_it_needs(tmp_path: Path) -> None:
    from google.protobuf import text_format

    from resnext_deploy.bundle.triton import write_triton_repository
    from resnext_deploy.engines.tensorrt.triton import VERSION_COMPATIBLE_ARG

    root, manifest = _plan_bundle(tmp_path / "bundle", version_compatible=True)
    result = write_triton_repository(root, manifest, tmp_path / "repo", plan=True)
    config = text_format.Parse(result.config, model_config_pb2().ModelConfig())
    assert config.platform == "tensorrt_plan" and config.max_batch_size == 8
    assert result.serve_command == f"tritonserver --model-repository {tmp_path / 'repo'} {VERSION_COMPATIBLE_ARG}"
    assert VERSION_COMPATIBLE_ARG == "--backend-config=tensorrt,version-compatible=true"
    root, manifest = _plan_bundle(tmp_path / "plain")
    plain = write_triton_repository(root, manifest, tmp_path / "repo2", plan=True)
    assert plain.serve_command == f"tritonserver --model-repository {tmp_path / 'repo2'}" and plain.warnings == ()


def test_a_plan_whose_profile_starts_above_1_is_refused(tmp_path: Path) -> None:
    from resnext_deploy.bundle.triton import write_triton_repository
    from resnext_deploy.errors import InputError

    root, manifest = _plan_bundle(tmp_path / "bundle", profile={"input": {"min": [2, 3, 64, 64], "max": [8, 3, 64, 64]}})
    with pytest.raises(InputError, match="profile starts at batch 2, but Triton sends batches from 1") as info:
        write_triton_repository(root, manifest, tmp_path / "repo", plan=True)
    assert "--min-batch 1" in info.value.hint and not (tmp_path / "repo").exists()


def test_the_tensorrt_of_a_named_triton_release_is_compared_with_the_plans(tmp_path: Path) -> None:
    from resnext_deploy.engines.tensorrt.triton import check_target

    plan = {"tensorrt_version": "10.13.3.9", "version_compatible": False}
    assert check_target(plan, "25.12") == []  # 25.12 ships TensorRT 10.13.3.9
    (mismatch,) = check_target(plan, "25.10")
    assert "built by TensorRT 10.13.3.9, Triton 25.10 ships TensorRT 10.11.0.33: it will not load there" in mismatch
    compatible = {"tensorrt_version": "10.11.0.33", "version_compatible": True}
    assert check_target(compatible, "25.12") == []  # a newer 10.x runs a version-compatible 10.11 plan
    assert "version-compatible with TensorRT 10.x from 10.13.3.9 on" in check_target(
        {"tensorrt_version": "10.13.3.9", "version_compatible": True}, "25.10")[0]
    assert "no TensorRT version recorded for Triton 19.01" in check_target(plan, "19.01")[0]
    assert check_target(plan) == []


def test_the_triton_release_reaches_the_cli_warning(tmp_path: Path, cli) -> None:
    from resnext_deploy.bundle.triton import write_triton_repository

    root, manifest = _plan_bundle(tmp_path / "bundle")
    result = write_triton_repository(root, manifest, tmp_path / "repo", plan=True, triton_release="25.08")
    assert result.warnings and "Triton 25.08 ships TensorRT 10.11.0.33" in result.warnings[0]
    ignored = runner.invoke(cli, ["package", str(tmp_path / "nowhere"), "-o", str(tmp_path / "b.tar.gz"),
                                  "--triton-release", "25.12"])
    assert "--triton-release only applies to --format triton" in " ".join(ignored.output.split())
