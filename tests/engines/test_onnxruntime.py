"""ONNX Runtime backend: saved optimized graph, manifest checks, runner checks, faults."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from engines_testlib import batch

from resnext_deploy.engines import BuildOptions
from resnext_deploy.engines.onnxruntime import OnnxRuntimeBackend
from resnext_deploy.errors import InputError, UsageError
from resnext_deploy.files import sha256_file

BACKEND = OnnxRuntimeBackend()


def _reference(onnx_path: Path, feed: dict[str, np.ndarray]) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    return session.run(["logits"], feed)[0]


def test_build_saves_optimized_graph_and_manifest(onnx_copy: Path) -> None:
    artifact = BACKEND.build(onnx_copy, BuildOptions(threads=1))
    assert artifact.path == onnx_copy.with_name("model.ort-opt.onnx") and artifact.path.is_file()
    assert artifact.sidecar == onnx_copy.with_name("model.onnxruntime.json")
    manifest = json.loads(artifact.sidecar.read_text())
    assert manifest == artifact.metadata
    assert manifest["backend"] == "onnxruntime" and manifest["precision"] == "fp32"
    assert manifest["providers"] == ["CPUExecutionProvider"] or "CPUExecutionProvider" in manifest["providers"]
    assert manifest["source_onnx"]["sha256"] == sha256_file(onnx_copy)
    assert manifest["optimized_graph"]["sha256"] == sha256_file(artifact.path)
    assert manifest["session"] == {
        "graph_optimization_level": "ORT_ENABLE_ALL",
        "execution_mode": "ORT_SEQUENTIAL",
        "inter_op_num_threads": 1,
        "intra_op_num_threads": 1,
    }
    assert set(manifest["cpu"]) >= {"machine", "model", "flags_sha256"}
    assert artifact.to_dict()["backend"] == "onnxruntime"
    assert not list(onnx_copy.parent.glob("*.tmp"))


def test_saved_graph_starts_fast_path_and_matches_source(onnx_copy: Path) -> None:
    artifact = BACKEND.build(onnx_copy, BuildOptions())
    feed = batch(3)
    with BACKEND.load(onnx_copy) as runner:
        assert runner.start_mode == "saved-optimized"
        assert runner.input_specs["input"].shape == (-1, 3, 32, 32)
        assert runner.input_specs["input"].dtype == np.float32
        assert runner.output_names == ["logits"]
        out = runner.infer(feed)
        assert runner.last_inference_time is not None and runner.last_inference_time > 0
    np.testing.assert_allclose(out["logits"], _reference(onnx_copy, feed), rtol=1e-4, atol=1e-4)
    for handle in (artifact, artifact.sidecar, artifact.path):
        assert BACKEND.load(handle).start_mode == "saved-optimized"


def test_build_into_another_folder(onnx_copy: Path, tmp_path: Path) -> None:
    out_dir = tmp_path / "engines"
    artifact = BACKEND.build(onnx_copy, BuildOptions(), output_dir=out_dir)
    assert artifact.path.parent == out_dir
    assert BACKEND.load(artifact).start_mode == "saved-optimized"
    with pytest.raises(InputError, match="may only name 'model.onnx' beside it"):  # a sidecar alone names only its folder
        BACKEND.load(artifact.sidecar)


def _edit_manifest(path: Path, edit: dict[str, object]) -> None:
    manifest = json.loads(path.read_text())
    manifest.update(edit)
    path.write_text(json.dumps(manifest))


@pytest.mark.parametrize(
    ("edit", "reason"),
    [
        ({"onnxruntime_version": "0.0.1"}, "ONNX Runtime 0.0.1"),
        ({"cpu": {"machine": "riscv", "model": "Other CPU", "flags_sha256": "0"}}, "another CPU"),
        ({"providers": ["CUDAExecutionProvider", "CPUExecutionProvider"]}, "providers"),
        ({"format": "something-else"}, "not an onnxruntime engine manifest"),
    ],
)
def test_mismatched_manifest_falls_back_to_cold_and_says_why(onnx_copy: Path, edit: dict, reason: str) -> None:
    artifact = BACKEND.build(onnx_copy, BuildOptions())
    _edit_manifest(artifact.sidecar, edit)
    runner = BACKEND.load(onnx_copy)
    assert runner.start_mode == "cold"
    assert reason in runner.start_reason
    with runner:
        assert runner.infer(batch(1))["logits"].shape == (1, 10)


def test_changed_source_or_damaged_graph_falls_back_to_cold(onnx_copy: Path, tiny_int8_onnx: Path) -> None:
    artifact = BACKEND.build(onnx_copy, BuildOptions())
    data = bytearray(artifact.path.read_bytes())
    data[-10:] = b"\0" * 10
    artifact.path.write_bytes(bytes(data))
    runner = BACKEND.load(onnx_copy)
    assert runner.start_mode == "cold" and "does not match its manifest" in runner.start_reason

    BACKEND.build(onnx_copy, BuildOptions())
    onnx_copy.write_bytes(tiny_int8_onnx.read_bytes())
    runner = BACKEND.load(onnx_copy)
    assert runner.start_mode == "cold" and "changed since" in runner.start_reason


def test_missing_manifest_or_graph_starts_cold(onnx_copy: Path) -> None:
    assert "no engine manifest" in BACKEND.load(onnx_copy).start_reason
    artifact = BACKEND.build(onnx_copy, BuildOptions())
    artifact.path.unlink()
    runner = BACKEND.load(onnx_copy)
    assert runner.start_mode == "cold" and "missing" in runner.start_reason


def test_int8_qdq_artifact_builds_and_runs(tiny_int8_onnx: Path, tmp_path: Path) -> None:
    artifact = BACKEND.build(tiny_int8_onnx, BuildOptions(), output_dir=tmp_path)
    assert artifact.path.name == "model.int8.ort-opt.onnx"
    assert artifact.sidecar.name == "model.int8.onnxruntime.json"
    assert artifact.metadata["precision"] == "int8"
    feed = batch(2)
    with BACKEND.load(artifact) as runner:
        assert runner.start_mode == "saved-optimized"
        out = runner.infer(feed)["logits"]
    np.testing.assert_allclose(out, _reference(tiny_int8_onnx, feed), rtol=1e-3, atol=1e-3)


def test_missing_onnx_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not found"):
        BACKEND.build(tmp_path / "nope.onnx", BuildOptions())
    with pytest.raises(InputError, match="not found"):
        BACKEND.load(tmp_path / "nope.onnx")


def test_truncated_onnx_fails_cleanly_and_leaves_nothing(onnx_copy: Path) -> None:
    data = onnx_copy.read_bytes()
    onnx_copy.write_bytes(data[: len(data) // 3])
    with pytest.raises(InputError, match="cannot load") as info:
        BACKEND.build(onnx_copy, BuildOptions())
    assert info.value.hint and "re-export" in info.value.hint
    assert sorted(p.name for p in onnx_copy.parent.iterdir()) == ["model.onnx"]
    with pytest.raises(InputError, match="cannot load"):
        BACKEND.load(onnx_copy)


def test_runner_rejects_bad_feeds_naming_expected_and_given(onnx_copy: Path) -> None:
    with BACKEND.load(onnx_copy) as runner:
        with pytest.raises(InputError, match=r"expects inputs \['input'\], given \['image'\]"):
            runner.infer({"image": batch(1)["input"]})
        with pytest.raises(InputError, match=r"expects shape \(N, 3, 32, 32\), given \(1, 3, 64, 64\)"):
            runner.infer({"input": np.zeros((1, 3, 64, 64), np.float32)})
        with pytest.raises(InputError, match=r"expects shape .* given \(3, 32, 32\)"):
            runner.infer({"input": np.zeros((3, 32, 32), np.float32)})
        with pytest.raises(InputError, match="expects dtype float32, given float64"):
            runner.infer({"input": np.zeros((1, 3, 32, 32), np.float64)})
        with pytest.raises(InputError, match="numpy array"):
            runner.infer({"input": [[0.0]]})  # type: ignore[dict-item]
    with pytest.raises(UsageError, match="outside its `with` block"):
        runner.infer(batch(1))


def test_threads_option_reaches_the_session(onnx_copy: Path) -> None:
    runner = BACKEND.load(onnx_copy, BuildOptions(threads=1))
    assert runner.providers[-1] == "CPUExecutionProvider"
    assert BuildOptions().intra_op_threads >= 1


def test_a_failed_save_of_the_optimized_graph_is_not_blamed_on_the_source(onnx_copy) -> None:
    """ORT reports a failed write (disk full, file size limit) as a protobuf error; the build says what failed."""
    import resource
    import signal

    from resnext_deploy.engines import BuildOptions, get_spec
    from resnext_deploy.errors import OutputError

    limit = max(1024, onnx_copy.stat().st_size // 4)  # the optimized graph cannot be written whole
    previous_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    previous_limit = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, previous_limit[1]))
    try:
        with pytest.raises(OutputError) as caught:
            get_spec("onnxruntime").backend().build(onnx_copy, BuildOptions())
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, previous_limit)
        signal.signal(signal.SIGXFSZ, previous_handler)
    assert "could not save the optimized graph" in caught.value.message and "loads fine" in caught.value.message
    assert "truncated" not in str(caught.value)
    assert not [p for p in onnx_copy.parent.iterdir() if p.name.endswith(".tmp")]


def test_the_providers_asked_for_are_the_sessions_and_unknown_ones_are_refused(onnx_copy: Path) -> None:
    with OnnxRuntimeBackend().load(onnx_copy, BuildOptions(providers=("CPUExecutionProvider",))) as runner:
        assert runner.providers == ["CPUExecutionProvider"]
    with pytest.raises(UsageError, match="no execution provider BogusExecutionProvider"):
        OnnxRuntimeBackend().load(onnx_copy, BuildOptions(providers=("BogusExecutionProvider",)))
