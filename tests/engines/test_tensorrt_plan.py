"""TensorRT path without TensorRT: the build plan, the real Polygraphy loader chain, sidecar checks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from engines_testlib import batch

from resnext_deploy.engines import BuildOptions
from resnext_deploy.engines.tensorrt import TensorRTBackend
from resnext_deploy.engines.tensorrt.plan import TrtEnumSettings, make_plan
from resnext_deploy.engines.tensorrt.runner import TensorRTRunner
from resnext_deploy.engines.tensorrt.sidecar import (
    SIDECAR_FORMAT,
    TrtEnvironment,
    check_engine,
    read_sidecar,
    save_engine,
    sidecar_path_for,
)
from resnext_deploy.errors import InputError, NotAvailableError

OPTIONS = BuildOptions(
    min_batch=1,
    opt_batch=8,
    max_batch=16,
    workspace_mb=512,
    builder_optimization_level=4,
    hardware_compatible=True,
    version_compatible=True,
)
H100 = TrtEnvironment("10.13.0.35", "NVIDIA H100 80GB HBM3", "9.0")
ENGINE_BYTES = b"serialized engine stand-in " * 64


def test_plan_from_onnx_and_options(onnx_copy: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache" / "timing.cache"
    plan = make_plan(onnx_copy, BuildOptions(**{**OPTIONS.to_dict(), "timing_cache": cache}))
    assert plan.engine_path == onnx_copy.with_name("model.fp32.engine")
    assert plan.sidecar_path == onnx_copy.with_name("model.fp32.engine.json")
    assert plan.strongly_typed is True
    assert plan.profile == {"input": ((1, 3, 32, 32), (8, 3, 32, 32), (16, 3, 32, 32))}
    assert plan.workspace_bytes == 512 << 20
    assert plan.builder_optimization_level == 4
    assert plan.timing_cache == cache
    assert plan.hardware_compatibility_level == "AMPERE_PLUS"
    assert plan.version_compatible is True
    assert [(i.name, i.shape, i.dtype) for i in plan.inputs] == [("input", (-1, 3, 32, 32), "float32")]
    assert [o.name for o in plan.outputs] == ["logits"]


def test_engine_names_follow_the_precision(tiny_int8_onnx: Path, onnx_copy: Path, tmp_path: Path) -> None:
    assert make_plan(tiny_int8_onnx, BuildOptions()).engine_path.name == "model.int8.engine"
    assert make_plan(onnx_copy, BuildOptions(precision="fp16"), tmp_path / "out").engine_path == (
        tmp_path / "out" / "model.fp16.engine"
    )


def test_polygraphy_loader_chain_carries_every_setting(onnx_copy: Path, tmp_path: Path) -> None:
    from polygraphy.backend.trt import (
        CreateConfig,
        EngineBytesFromNetwork,
        NetworkFromOnnxPath,
        PostprocessConfig,
    )

    cache = tmp_path / "timing.cache"
    plan = make_plan(onnx_copy, BuildOptions(**{**OPTIONS.to_dict(), "timing_cache": cache}))
    loader = plan.to_polygraphy()
    assert isinstance(loader, EngineBytesFromNetwork)
    assert loader.timing_cache_path == str(cache)
    network = loader._network
    assert isinstance(network, NetworkFromOnnxPath)
    assert network.path == str(onnx_copy) and network.strongly_typed is True
    post = loader._config
    assert isinstance(post, PostprocessConfig)
    assert post._func == TrtEnumSettings(workspace_bytes=512 << 20, hardware_compatibility_level="AMPERE_PLUS")
    config = post._config
    assert isinstance(config, CreateConfig)
    assert not (config.fp16 or config.int8 or config.bf16 or config.fp8) and config.calibrator is None
    (profile,) = config.profiles
    shapes = profile["input"]
    assert (tuple(shapes.min), tuple(shapes.opt), tuple(shapes.max)) == ((1, 3, 32, 32), (8, 3, 32, 32), (16, 3, 32, 32))
    assert config.timing_cache_path == str(cache)
    assert config.builder_optimization_level == 4
    assert config.version_compatible is True
    assert config.hardware_compatibility_level is None  # applied as an enum by TrtEnumSettings


def test_plain_options_need_no_enum_postprocessing(onnx_copy: Path) -> None:
    from polygraphy.backend.trt import CreateConfig

    loader = make_plan(onnx_copy, BuildOptions()).to_polygraphy()
    assert isinstance(loader._config, CreateConfig)
    assert loader.timing_cache_path is None and loader._config.version_compatible is False


def test_only_the_batch_axis_may_be_dynamic(tmp_path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Relu", ["input"], ["logits"])],
        "g",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, "h", "w"])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 3, "h", "w"])],
    )
    path = tmp_path / "model.onnx"
    onnx.save(helper.make_model(graph), path)
    with pytest.raises(InputError, match="only the batch"):
        make_plan(path, BuildOptions())


def test_missing_or_truncated_onnx_fails_before_tensorrt(onnx_copy: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not found"):
        TensorRTBackend().build(tmp_path / "missing.onnx", BuildOptions())
    onnx_copy.write_bytes(onnx_copy.read_bytes()[:1000])
    with pytest.raises(InputError, match="cannot read ONNX"):
        TensorRTBackend().build(onnx_copy, BuildOptions())


@pytest.fixture
def engine(onnx_copy: Path) -> Path:
    """A stand-in engine file and the sidecar a build would write for it on an H100."""
    plan = make_plan(onnx_copy, OPTIONS)
    sidecar = {
        "format": SIDECAR_FORMAT,
        "backend": "tensorrt",
        **H100.to_dict(),
        "precision": plan.precision,
        "profile": plan.profile_dict(),
        "inputs": [{"name": "input", "shape": [-1, 3, 32, 32], "dtype": "float32"}],
        "outputs": [{"name": "logits", "shape": [-1, 10], "dtype": "float32"}],
        "options": OPTIONS.to_dict(),
    }
    record = save_engine(plan.engine_path, [ENGINE_BYTES[:100], memoryview(ENGINE_BYTES[100:])], sidecar)
    assert record["engine"]["size"] == len(ENGINE_BYTES)
    return plan.engine_path


def _edit(engine: Path, **changes: object) -> dict:
    sidecar = json.loads(sidecar_path_for(engine).read_text())
    for dotted, value in changes.items():
        target = sidecar
        *parents, key = dotted.split("__")
        for parent in parents:
            target = target[parent]
        target[key] = value
    sidecar_path_for(engine).write_text(json.dumps(sidecar))
    return read_sidecar(engine)


def test_matching_sidecar_passes(engine: Path) -> None:
    check_engine(engine, read_sidecar(engine), H100, engine.read_bytes())


def test_missing_engine_or_sidecar(engine: Path) -> None:
    sidecar_path_for(engine).unlink()
    with pytest.raises(InputError, match="has no sidecar") as info:
        read_sidecar(engine)
    assert f"resnext-deploy build {engine.parent / 'model.onnx'} --backend tensorrt" in (info.value.hint or "")
    engine.unlink()
    with pytest.raises(InputError, match="engine not found"):
        TensorRTBackend().load(engine)


def test_unreadable_sidecar(engine: Path) -> None:
    sidecar_path_for(engine).write_text("{not json")
    with pytest.raises(InputError, match="unreadable"):
        read_sidecar(engine)


def test_truncated_or_replaced_engine_fails_the_sha256(engine: Path) -> None:
    engine.write_bytes(ENGINE_BYTES[:50])
    with pytest.raises(InputError, match="does not match its sidecar sha256"):
        check_engine(engine, read_sidecar(engine), H100, engine.read_bytes())
    engine.write_bytes(ENGINE_BYTES[::-1])
    with pytest.raises(InputError, match="does not match its sidecar sha256"):
        check_engine(engine, read_sidecar(engine), H100, engine.read_bytes())


def test_other_gpu_architecture(engine: Path) -> None:
    turing = TrtEnvironment(H100.tensorrt_version, "Tesla T4", "7.5")
    with pytest.raises(NotAvailableError, match=r"built for NVIDIA H100.*\(compute capability 9.0\).*Tesla T4") as info:
        check_engine(engine, read_sidecar(engine), turing, engine.read_bytes())
    assert "rebuild it on this machine" in (info.value.hint or "")
    ampere = TrtEnvironment(H100.tensorrt_version, "NVIDIA A10", "8.6")
    check_engine(engine, read_sidecar(engine), ampere, engine.read_bytes())  # hardware-compatible build
    sidecar = _edit(engine, options__hardware_compatible=False)
    with pytest.raises(NotAvailableError, match="compute capability 8.6"):
        check_engine(engine, sidecar, ampere, engine.read_bytes())


def test_other_tensorrt_version(engine: Path) -> None:
    newer = TrtEnvironment("11.1.0", H100.gpu_name, H100.compute_capability)
    older = TrtEnvironment("10.1.0", H100.gpu_name, H100.compute_capability)
    check_engine(engine, read_sidecar(engine), newer, engine.read_bytes())  # version-compatible build
    with pytest.raises(NotAvailableError, match="built with TensorRT 10.13.0.35; this machine has TensorRT 10.1.0"):
        check_engine(engine, read_sidecar(engine), older, engine.read_bytes())
    sidecar = _edit(engine, options__version_compatible=False)
    with pytest.raises(NotAvailableError, match="not version-compatible"):
        check_engine(engine, sidecar, newer, engine.read_bytes())


def test_load_checks_files_before_needing_tensorrt(engine: Path) -> None:
    backend = TensorRTBackend()
    if backend.available()[0]:
        pytest.skip("TensorRT and a GPU are present here")
    with pytest.raises(NotAvailableError, match="not available") as info:
        backend.load(engine)
    assert "resnext-deploy[tensorrt]" in (info.value.hint or "")
    with pytest.raises(NotAvailableError):
        backend.load(engine.with_name("model.onnx"), OPTIONS)  # the .onnx resolves to model.fp32.engine


def test_interrupted_build_leaves_no_finished_looking_file(engine: Path) -> None:
    before = engine.read_bytes(), sidecar_path_for(engine).read_text()

    def interrupted_build():
        yield b"half an engine"
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        save_engine(engine, interrupted_build(), {"format": SIDECAR_FORMAT})
    assert (engine.read_bytes(), sidecar_path_for(engine).read_text()) == before
    assert not list(engine.parent.glob(".*.tmp"))

    fresh = engine.with_name("other.fp32.engine")
    with pytest.raises(KeyboardInterrupt):
        save_engine(fresh, interrupted_build(), {"format": SIDECAR_FORMAT})
    assert not fresh.exists() and not sidecar_path_for(fresh).exists()


def test_runner_checks_feed_and_profile_before_tensorrt(engine: Path) -> None:
    runner = TensorRTRunner(engine, engine.read_bytes(), read_sidecar(engine))
    assert runner.input_specs["input"].shape == (-1, 3, 32, 32)
    assert runner.output_names == ["logits"]
    assert runner.check_feed(batch(16))["input"].shape == (16, 3, 32, 32)
    with pytest.raises(InputError, match=r"batch 17 for input 'input' is outside the engine's profile 1\.\.16"):
        runner.check_feed(batch(17))
    with pytest.raises(InputError, match="expects dtype float32, given float16"):
        runner.check_feed({"input": batch(1)["input"].astype(np.float16)})
    with pytest.raises(InputError, match=r"expects inputs \['input'\], given \['input', 'mask'\]"):
        runner.check_feed({**batch(1), "mask": np.zeros(1, np.float32)})
