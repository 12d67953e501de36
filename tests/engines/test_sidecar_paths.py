"""Engine sidecars name only their own files beside them: a path elsewhere, a folder part or another artifact's
file is refused (exit 2), never loaded, even when the sidecar's own size and sha256 describe that file."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from engines_testlib import batch

from resnext_deploy.engines import BuildOptions
from resnext_deploy.errors import InputError
from resnext_deploy.files import sha256_file

OPTIONS = BuildOptions(threads=1)
# (backend, sidecar suffix, the sidecar's record of the engine file)
ENGINES = [("onnxruntime", ".onnxruntime.json", "optimized_graph"), ("openvino", ".openvino.json", "compiled_model")]


def _backend(name: str):  # noqa: ANN202 - the Backend protocol
    from resnext_deploy.engines import get_spec

    if name == "openvino":
        pytest.importorskip("openvino", reason="openvino is not installed on this platform")
    return get_spec(name).backend()


def _point_at(sidecar: Path, key: str, value: object, target: Path) -> None:
    """Edit ``sidecar[key]`` to name ``value`` with ``target``'s true size, mtime and sha256 (the issue's forgery)."""
    record = json.loads(sidecar.read_text())
    stat = target.stat()
    record[key].update(path=value, size=stat.st_size, mtime_ns=stat.st_mtime_ns, sha256=sha256_file(target))
    sidecar.write_text(json.dumps(record))


@pytest.fixture
def two_folders(tiny_onnx: Path, tiny_int8_onnx: Path, tmp_path: Path) -> tuple[Path, Path]:
    """``here/model.int8.onnx`` (the artifact) and ``elsewhere/model.onnx`` (another model, FP32)."""
    here, elsewhere = tmp_path / "here", tmp_path / "elsewhere"
    here.mkdir(), elsewhere.mkdir()
    (here / "model.int8.onnx").write_bytes(tiny_int8_onnx.read_bytes())
    (elsewhere / "model.onnx").write_bytes(tiny_onnx.read_bytes())
    (here / "model.fp32x.onnx").write_bytes(tiny_onnx.read_bytes())
    return here / "model.int8.onnx", elsewhere / "model.onnx"


@pytest.mark.parametrize(("backend", "suffix", "key"), ENGINES)
@pytest.mark.parametrize("form", ["absolute", "relative", "sibling"])
def test_a_sidecar_naming_another_engine_file_is_refused(two_folders, backend: str, suffix: str, key: str, form: str) -> None:
    artifact, other = two_folders
    engine = _backend(backend)
    built = engine.build(artifact, OPTIONS)
    foreign = engine.build(other, OPTIONS).path  # the FP32 engine of another model, outside the folder
    if form == "sibling":  # a plain name, but another artifact's engine in the same folder
        foreign = engine.build(artifact.with_name("model.fp32x.onnx"), OPTIONS).path
    value = {"absolute": os.fspath(foreign), "relative": os.path.relpath(foreign, artifact.parent),
             "sibling": foreign.name}[form]
    _point_at(built.sidecar, key, value, foreign)
    with pytest.raises(InputError, match="may only name") as info:
        engine.load(artifact, OPTIONS)
    assert info.value.exit_code == 2 and artifact.with_name(artifact.stem + suffix).name in str(info.value)


@pytest.mark.parametrize(("backend", "suffix", "key"), ENGINES)
def test_a_sidecar_path_that_is_not_a_string_is_no_traceback(two_folders, backend: str, suffix: str, key: str) -> None:
    artifact, _ = two_folders
    engine = _backend(backend)
    built = engine.build(artifact, OPTIONS)
    record = json.loads(built.sidecar.read_text())
    record[key]["path"] = 5
    built.sidecar.write_text(json.dumps(record))
    if backend == "openvino":  # OpenVINO: a sidecar that is not ours is an error naming the rebuild
        with pytest.raises(InputError, match=f"{key}.path: Input should be a valid string"):
            engine.load(artifact, OPTIONS)
        return
    runner = engine.load(artifact, OPTIONS)  # ONNX Runtime: an unusable manifest is a cold start that says why
    assert runner.start_mode == "cold" and f"{key}.path" in runner.start_reason
    with runner:
        assert runner.infer(batch(2))["logits"].shape == (2, 10)


def test_openvino_io_names_that_do_not_exist_recompile_and_say_why(two_folders, caplog) -> None:
    artifact, _ = two_folders
    engine = _backend("openvino")
    built = engine.build(artifact, OPTIONS)
    record = json.loads(built.sidecar.read_text())
    record["outputs"] = ["no_such_output"]
    built.sidecar.write_text(json.dumps(record))
    with caplog.at_level("WARNING"):
        runner = engine.load(artifact, OPTIONS)
    assert runner.start_mode == "compiled" and "no_such_output" in runner.start_reason
    with runner:
        assert runner.infer(batch(2))["logits"].shape == (2, 10)


@pytest.mark.parametrize("engine_name", ["/elsewhere/model.engine", "../model.engine", "model.fp32.engine", 7])
def test_a_tensorrt_sidecar_naming_another_engine_is_refused_before_tensorrt(tmp_path: Path, engine_name: object) -> None:
    from resnext_deploy.engines.tensorrt.sidecar import SIDECAR_FORMAT, read_sidecar

    engine = tmp_path / "model.int8.engine"
    engine.write_bytes(b"plan")
    tensor = {"name": "input", "shape": [-1, 3, 32, 32], "dtype": "float32"}
    record = {"format": SIDECAR_FORMAT, "tensorrt_version": "10.9", "gpu": {"name": "L4", "compute_capability": "8.9"},
              "engine": {"path": engine_name, "sha256": "0" * 64, "size": 4}, "inputs": [tensor],
              "outputs": [{"name": "logits"}], "source_onnx": {"path": "model.int8.onnx", "sha256": "0" * 64}}
    engine.with_name("model.int8.engine.json").write_text(json.dumps(record))
    with pytest.raises(InputError, match="may only name 'model.int8.engine'|engine.path: Input should be a valid string"):
        read_sidecar(engine)
    record["engine"]["path"] = engine.name
    engine.with_name("model.int8.engine.json").write_text(json.dumps(record))
    assert read_sidecar(engine)["engine"]["path"] == engine.name
