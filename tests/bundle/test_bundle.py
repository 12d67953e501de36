"""Round trip export -> package -> inspect -> build -> predict on the tiny model."""

from __future__ import annotations

import json
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from resnext_deploy.bundle import build_bundle, open_bundle, package_directory, predict_images, safe_extract
from resnext_deploy.bundle.predict import softmax
from resnext_deploy.bundle.manifest import MANIFEST_NAME, SCHEMA, read_manifest, verify_bundle
from resnext_deploy.errors import InputError, OutputError
from resnext_deploy.files import sha256_file

runner = CliRunner()


def test_package_is_deterministic_and_complete(export_dir: Path, bundle_file: Path, tmp_path: Path) -> None:
    again = package_directory(export_dir, tmp_path / "again.tar.gz")
    assert again.path.read_bytes() == bundle_file.read_bytes()
    with tarfile.open(bundle_file) as tar:
        members = tar.getmembers()
    names = [m.name for m in members]
    assert names[0] == MANIFEST_NAME and names[1:] == sorted(names[1:])
    assert {m.mtime for m in members} == {946684800} and {(m.uid, m.gid, m.uname) for m in members} == {(0, 0, "")}
    assert {"model.onnx", "model.ort-opt.onnx", "model.onnxruntime.json", "report.json", "preprocess.json", "classes.txt"} <= set(names)
    manifest = again.manifest
    assert manifest["schema"] == SCHEMA and manifest["precision"] == "fp32"
    assert manifest["input"] == {"name": "input", "shape": ["batch", 3, 64, 64], "dtype": "float32"}
    assert manifest["output"] == {"name": "logits", "shape": ["batch", 10], "dtype": "float32"}
    assert manifest["model"]["random_weights"] is True
    assert [t["backend"] for t in manifest["targets"]] == ["onnxruntime"]
    assert sorted(f["path"] for f in manifest["files"]) == sorted(set(names) - {MANIFEST_NAME})


def test_classes_are_first_imagenet_names(bundle_copy: Path, tmp_path: Path) -> None:
    from resnext_deploy.data.datasets import class_name

    directory = safe_extract(bundle_copy, tmp_path / "unpacked")
    assert (directory / "classes.txt").read_text().splitlines() == [class_name(i) for i in range(10)]
    assert json.loads((directory / "preprocess.json").read_text())["input_size"] == 64


def test_package_refuses_existing_output_and_bad_dir(export_dir: Path, bundle_file: Path, tmp_path: Path, cli) -> None:
    with pytest.raises(OutputError):
        package_directory(export_dir, bundle_file)
    result = runner.invoke(cli, ["package", str(tmp_path / "nope"), "--output", str(tmp_path / "b.tar.gz")])
    assert result.exit_code == 2 and "export directory not found" in result.output


def test_inspect_cli_verifies_tarball_and_folder(bundle_copy: Path, tmp_path: Path, cli) -> None:
    result = runner.invoke(cli, ["inspect", str(bundle_copy)])
    assert result.exit_code == 0, result.output
    assert "files match manifest.json" in result.output and "RANDOM" in result.output
    directory = safe_extract(bundle_copy, tmp_path / "unpacked")
    result = runner.invoke(cli, ["inspect", str(directory), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["manifest"]["model"]["name"] == "resnext_tiny"


def test_predict_matches_running_the_artifact_directly(bundle_file: Path, export_dir: Path, images: list[Path], cli) -> None:
    import onnxruntime as ort

    from resnext_deploy.data.preprocess import preprocess_image
    from resnext_deploy.zoo import PreprocessConfig

    result = runner.invoke(cli, ["predict", str(bundle_file), *map(str, images), "--top", "3", "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    session = ort.InferenceSession(str(export_dir / "model.onnx"), providers=["CPUExecutionProvider"])
    cfg = PreprocessConfig(input_size=64, crop_pct=0.875, interpolation="bilinear")
    for image, predicted in zip(images, payload["predictions"]):
        logits = session.run(["logits"], {"input": preprocess_image(image, cfg)[None]})[0]
        probabilities = softmax(logits)[0]
        expected = np.argsort(-probabilities, kind="stable")[:3]
        assert [t["index"] for t in predicted["top"]] == expected.tolist()
        np.testing.assert_allclose([t["probability"] for t in predicted["top"]], probabilities[expected], rtol=1e-4, atol=1e-6)
    assert payload["backend"] == "onnxruntime" and any("RANDOM" in w for w in payload["warnings"])


def test_predict_bad_images_exit_2(bundle_file: Path, tmp_path: Path, cli) -> None:
    missing = runner.invoke(cli, ["predict", str(bundle_file), str(tmp_path / "missing.jpg")])
    assert missing.exit_code == 2 and "image not found" in missing.output
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    result = runner.invoke(cli, ["predict", str(bundle_file), str(corrupt)])
    assert result.exit_code == 2 and "cannot read image" in result.output and "hint:" in result.output


def test_build_reuses_matching_target(bundle_copy: Path, cli) -> None:
    result = runner.invoke(cli, ["build", str(bundle_copy), "--backend", "onnxruntime"])
    assert result.exit_code == 0, result.output
    assert "reused" in result.output
    unpacked = bundle_copy.with_name("tiny")
    assert verify_bundle(unpacked).verified


def test_build_rebuilds_for_another_target(export_dir: Path, tmp_path: Path, images: list[Path]) -> None:
    other = Path(shutil.copytree(export_dir, tmp_path / "other-export"))
    sidecar_path = other / "model.onnxruntime.json"
    sidecar = json.loads(sidecar_path.read_text())
    sidecar["cpu"] = {**sidecar["cpu"], "model": "Some Other CPU", "flags_sha256": "0" * 64}
    sidecar_path.write_text(json.dumps(sidecar))
    report = json.loads((other / "report.json").read_text())  # as an export on that other machine records it
    report["checksums"]["model.onnxruntime.json"] = sha256_file(sidecar_path)
    (other / "report.json").write_text(json.dumps(report))
    bundle = package_directory(other, tmp_path / "other.tar.gz").path
    result = build_bundle(bundle, "onnxruntime")
    assert result.action == "built" and "another CPU" in result.reason
    manifest = read_manifest(result.directory)
    assert verify_bundle(result.directory, manifest).verified
    assert manifest["targets"][0]["cpu"]["model"] != "Some Other CPU"
    assert build_bundle(bundle, "onnxruntime").action == "reused"  # the unpacked folder is found again
    with open_bundle(result.directory) as opened:
        assert len(predict_images(opened, images[:1], top=2).predictions[0].top) == 2


def test_unpacked_folder_with_extra_file_warns(bundle_copy: Path, tmp_path: Path) -> None:
    directory = safe_extract(bundle_copy, tmp_path / "unpacked")
    (directory / "notes.txt").write_text("hello")
    assert any("notes.txt" in w for w in verify_bundle(directory).warnings)


def test_safe_extract_refuses_nonempty_target(bundle_copy: Path, tmp_path: Path) -> None:
    target = tmp_path / "busy"
    target.mkdir()
    (target / "x").write_text("x")
    with pytest.raises(OutputError):
        safe_extract(bundle_copy, target)


def test_missing_bundle_is_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="bundle not found"):
        with open_bundle(tmp_path / "nope.tar.gz"):
            pass
