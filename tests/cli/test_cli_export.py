"""The CLI surface: help everywhere, the zoo listing, export end to end, and exit codes for bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import onnx
import pytest
import torch
from typer.testing import CliRunner

from resnext_deploy.cli import app
from resnext_deploy.metadata import read_metadata
from resnext_deploy.zoo import SEED_MODELS

runner = CliRunner()


# latency is measured (two timed runs per side and batch size), not timed for seconds: these tests check the flow
QUICK_LATENCY = ("--iterations", "2", "--duration", "0", "--warmup-ms", "0")


def invoke(*args: str):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def tiny_weights(tiny_spec, tmp_path_factory):
    """Random tiny weights saved as a checkpoint (training is not needed for CLI behaviour)."""
    from resnext_deploy.exporters.models import build_model

    path = tmp_path_factory.mktemp("weights") / "tiny.pth"
    torch.save(build_model(tiny_spec, "random")[0].state_dict(), path)
    return path


def test_help_works_for_every_command_without_heavy_imports():
    code = (
        "import json, sys; from typer.testing import CliRunner; from resnext_deploy.cli import app;"
        "names = [c.name or c.callback.__name__ for c in app.registered_commands];"
        "codes = {n: CliRunner().invoke(app, [n, '--help']).exit_code for n in names};"
        "codes['--help'] = CliRunner().invoke(app, ['--help']).exit_code;"
        "heavy = [m for m in ('torch', 'onnxruntime', 'openvino', 'tensorrt', 'timm', 'onnxsim') if m in sys.modules];"
        "print(json.dumps({'codes': codes, 'heavy': heavy}))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert {"export", "models", "--help"} <= set(result["codes"])
    assert set(result["codes"].values()) == {0}
    assert result["heavy"] == []


def test_models_lists_the_zoo_as_table_and_json():
    table = invoke("models")
    assert table.exit_code == 0
    for spec in SEED_MODELS:
        assert spec.name in table.output
    listed = json.loads(invoke("models", "--json").output)
    by_name = {entry["name"]: entry for entry in listed}
    assert by_name["resnext101_32x8d"]["params_m"] == 88.79
    assert by_name["tv_resnext50_32x4d"]["preprocess"]["interpolation"] == "bilinear"
    assert by_name["resnext50d_32x4d"]["top1"] == 79.67


@pytest.mark.parametrize(
    "args,message",
    [
        (["export", "resnext50x_32x4d"], "did you mean"),
        (["export", "resnext50d_32x4d", "--precision", "int4"], "int4"),
        (["export", "resnext50d_32x4d", "--backend", "coreml"], "coreml"),
        (["export", "resnext50d_32x4d", "--precision", "int8"], "--calib-data"),
        (["export", "resnext50d_32x4d", "-p", "int8", "--calib-data", "/nonexistent"], "is not a folder"),
        (["export", "resnext50d_32x4d", "--eval-data", "/nonexistent"], "is not a folder"),
        (["export", "resnext50d_32x4d", "--backend", "tensorrt"], "resnext-deploy[tensorrt]"),
    ],
)
def test_bad_input_exits_2_without_traceback(args, message):
    result = invoke(*args)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output


def test_export_fp32_end_to_end(tiny_spec, tiny_weights, tmp_path):
    out = tmp_path / "out"
    result = invoke("export", "resnext_tiny", "--weights", tiny_weights, "--output", out, *QUICK_LATENCY)
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert report["schema"] == "resnext-deploy/report" and report["schema_version"] == 2
    assert report["weights"]["kind"] == "file" and report["warnings"] == []
    assert report["export"]["batchnorm"]["remaining"] == 0 and report["export"]["parity"]["ok"]
    assert report["export"]["exporter"] == "dynamo" and report["export"]["opset"] == 18
    assert report["engine"]["backend"] == "onnxruntime"
    meta = read_metadata(out / "model.onnx")
    assert meta["exporter"] == "dynamo" and meta["opset"] == 18
    assert meta["model_name"] == "resnext_tiny" and meta["preprocess"]["input_size"] == 64
    assert meta["weights"]["sha256"] == report["weights"]["sha256"]
    assert not [p for p in out.iterdir() if p.name.startswith(".")], "temporary files left behind"

    again = invoke("export", "resnext_tiny", "--weights", tiny_weights, "--output", out)
    assert again.exit_code == 2 and "--force" in again.output


@pytest.mark.slow  # a whole FP32 export
def test_random_weights_are_flagged_in_report_and_output(tiny_spec, tmp_path):
    result = invoke("export", "resnext_tiny", "--weights", "random", "--output", tmp_path, "--no-engine")
    assert result.exit_code == 0, result.output
    assert "RANDOM WEIGHTS" in result.output
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["weights"]["random"] and any("RANDOM WEIGHTS" in w for w in report["warnings"])


def test_checkpoint_that_does_not_fit_exits_2(tiny_spec, tmp_path):
    torch.save({"fc.weight": torch.zeros(3, 3)}, tmp_path / "other.pth")
    result = invoke("export", "resnext_tiny", "--weights", tmp_path / "other.pth", "--output", tmp_path / "o")
    assert result.exit_code == 2 and "missing" in result.output and "wrong shape" in result.output


def test_unwritable_output_exits_2(tiny_spec, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = invoke("export", "resnext_tiny", "--weights", "random", "--output", blocker / "sub")
    assert result.exit_code == 2 and "cannot write" in result.output


def test_int8_export_writes_manifest_stats_and_qdq_artifact(int8_export_dir, synthetic_imagenet, tmp_path):
    out = tmp_path / "int8"
    # the trained model's FP32 export, reused (the FP32 stage is test_export_fp32_end_to_end's; INT8 from weights in
    # one command is tests/export/test_mixed_precision.py's)
    args = ["export", "resnext_tiny", "-p", "int8", "--fp32-from", int8_export_dir / "model.onnx", "--calib-data",
            synthetic_imagenet.root, "--calib-size", "40", "--cache-dir", tmp_path / "cache", "--iterations", "2", "--duration", "0",
            "--max-top1-drop", "1.0", "-o", out]
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    # The run ends with verification on the root's val/ split, disjoint from the train/ calibration subset.
    accuracy = report["verification"]["accuracy"]
    assert accuracy["images"] == 10 * synthetic_imagenet.val_per_class
    assert abs(accuracy["top1_delta_pp"]) <= 1.0 and accuracy["baseline_top1"] >= 80.0
    assert report["gates"]["passed"]
    manifest = json.loads((out / "calibration" / "manifest.json").read_text())
    assert manifest["count"] == 40 and manifest["split"] == "train"
    assert report["calibration"]["manifest_sha256"] == manifest["sha256"]
    assert report["calibration"]["method"] == "minmax"  # --calib-method auto: the onnxruntime recipe's default
    assert (out / report["artifacts"]["calibration_stats"]).is_file()
    meta = read_metadata(out / "model.int8.onnx")
    assert meta["precision"] == "int8" and meta["calibration"]["manifest_sha256"] == manifest["sha256"]
    ops = {n.op_type for n in onnx.load(str(out / "model.int8.onnx")).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert not report["quantization"]["stats_cache_hit"]

    # The same images pinned by the manifest and the same FP32 model: statistics come from the cache, the artifact
    # is identical (verified above; not again).
    again = invoke(*args[:-2], "--calib-manifest", out / "calibration" / "manifest.json", "--no-verify",
                   "-o", tmp_path / "again")
    assert again.exit_code == 0, again.output
    second = json.loads((tmp_path / "again" / "report.json").read_text())
    assert second["quantization"]["stats_cache_hit"]
    assert second["calibration"]["manifest_sha256"] == manifest["sha256"]
    assert second["checksums"]["model.int8.onnx"] == report["checksums"]["model.int8.onnx"]


def test_fp16_export(random_fp32_export_dir, tmp_path):  # the FP32 export is test_export_fp32_end_to_end's
    result = invoke("export", "resnext_tiny", "-p", "fp16", "--fp32-from", random_fp32_export_dir / "model.onnx",
                    "-o", tmp_path, *QUICK_LATENCY)
    assert result.exit_code == 0, result.output
    assert read_metadata(tmp_path / "model.fp16.onnx")["precision"] == "fp16"


@pytest.mark.slow
def test_real_size_resnext50d_exports_end_to_end(tmp_path):
    result = invoke("export", "resnext50d_32x4d", "--weights", "random", "-o", tmp_path, "--no-engine")
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["export"]["batchnorm"] == {"folded": 55, "remaining": 0, "fold_max_abs_diff": pytest.approx(0, abs=1e-5)}
    assert report["export"]["parity"]["ok"]
    assert os.path.getsize(tmp_path / "model.onnx") > 50e6


def test_fp32_from_must_be_an_fp32_export_of_the_same_model_and_size(tiny_spec, tmp_path):
    from onnx import TensorProto, helper

    from resnext_deploy.metadata import set_metadata

    graph = helper.make_graph([helper.make_node("Identity", ["input"], ["logits"])], "g",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 32, 32])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 3, 32, 32])])
    model = helper.make_model(graph)
    set_metadata(model, {"model_name": "resnext_tiny", "preprocess": {"input_size": 32}, "precision": "fp32"})
    onnx.save(model, tmp_path / "model.onnx")
    result = invoke("export", "resnext_tiny", "-p", "fp16", "--fp32-from", tmp_path / "model.onnx", "-o", tmp_path / "o")
    assert result.exit_code == 2, result.output
    assert "is resnext_tiny at 32 px (fp32), not resnext_tiny at 64 px" in " ".join(result.output.split())
    (tmp_path / "notes.onnx").write_text("not a model")
    result = invoke("export", "resnext_tiny", "-p", "fp16", "--fp32-from", tmp_path / "notes.onnx", "-o", tmp_path / "o")
    assert result.exit_code == 2 and "not a readable ONNX model" in " ".join(result.output.split())
    assert not (tmp_path / "o").exists()


def test_tensorrt_with_the_cpu_recipe_is_refused_before_any_heavy_work(tiny_spec, tmp_path):
    from resnext_deploy.engines.select import engine_recipe

    images = tmp_path / "images"
    images.mkdir()
    common = ["export", "resnext_tiny", "-p", "int8", "--backend", "tensorrt", "--weights", "random",
              "--calib-data", images, "-o", tmp_path / "o"]
    result = invoke(*common, "--recipe", "onnxruntime")
    text = " ".join(result.output.split())
    assert result.exit_code == 2 and "--backend tensorrt cannot build an engine from the onnxruntime recipe" in text
    assert "add --targets onnxruntime,tensorrt" in text and not (tmp_path / "o").exists()
    # with the TensorRT artifact made too, the recipe is fine: what stops it here is only the missing TensorRT/GPU
    result = invoke(*common, "--recipe", "onnxruntime", "--targets", "onnxruntime,tensorrt")
    assert result.exit_code == 2 and "cannot build an engine from" not in " ".join(result.output.split())
    assert engine_recipe("tensorrt", "onnxruntime", ("tensorrt",)) == "tensorrt"
    assert engine_recipe("tensorrt", "auto") == "tensorrt" and engine_recipe("onnxruntime", "tensorrt") == "tensorrt"
