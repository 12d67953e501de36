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
