"""What the first GPU would have hit, checked on CPU up to the TensorRT call.

TensorRT itself is never imported here: where a test needs its side of a call, a stand-in
object offers exactly the documented surface (``IBuilderConfig.create_timing_cache`` /
``set_timing_cache``, ``IRuntime.engine_host_code_allowed`` / ``deserialize_cuda_engine``,
``trt.MemoryPoolType`` / ``trt.HardwareCompatibilityLevel``) and behaves as the docs say.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from resnext_deploy.engines import BuildOptions
from resnext_deploy.engines.tensorrt import TensorRTBackend
from resnext_deploy.engines.tensorrt.backend import build_engine_bytes, sidecar_record
from resnext_deploy.engines.tensorrt.cuda_runtime import cuda_runtime_problem, polygraphy_search_dirs
from resnext_deploy.engines.tensorrt.layers import data_type, parse_engine_information, summarize
from resnext_deploy.engines.tensorrt.plan import TrtEnumSettings, make_plan
from resnext_deploy.engines.tensorrt.runner import TensorRTRunner
from resnext_deploy.engines.tensorrt.runtime import EngineDeserializationError, EngineDeserializer, deserialize
from resnext_deploy.engines.tensorrt.sidecar import TrtEnvironment, rebuild_hint
from resnext_deploy.engines.tensorrt.timing_cache import drop_stale_timing_cache, timing_cache_problem
from resnext_deploy.errors import InputError, NotAvailableError

H100 = TrtEnvironment("10.13.0.35", "NVIDIA H100 80GB HBM3", "9.0")


# --- TF32 (item 6) -----------------------------------------------------------------------------------------------

def test_tf32_is_on_by_default_as_in_trtexec_and_recorded(onnx_copy: Path) -> None:
    plan = make_plan(onnx_copy, BuildOptions())
    assert plan.tf32 is True and plan.to_polygraphy()._config.tf32 is True  # Polygraphy clears the flag otherwise
    off = make_plan(onnx_copy, BuildOptions(tf32=False))
    assert off.to_polygraphy()._config.tf32 is False
    record = sidecar_record(off, H100, BuildOptions(tf32=False), None)
    assert record["tf32"] is False and record["options"]["tf32"] is False
    assert sidecar_record(plan, H100, BuildOptions(), None)["tf32"] is True


# --- our own deserialization (item 8) -----------------------------------------------------------------------------

class StandInRuntime:
    """``trt.IRuntime``'s documented surface: host code disallowed by default; None for an engine it cannot load."""

    def __init__(self, engine: object | None) -> None:
        self.engine, self.deserialized, self.engine_host_code_allowed = engine, None, False

    def deserialize_cuda_engine(self, data: bytes) -> object | None:
        self.deserialized = data
        return self.engine


class StandInRuntimeBefore86:
    """A TensorRT 8.5 runtime: no ``engine_host_code_allowed`` attribute to set."""

    __slots__ = ("engine",)

    def __init__(self, engine: object | None) -> None:
        self.engine = engine


def test_host_code_is_allowed_only_for_version_compatible_engines() -> None:
    runtime = StandInRuntime(engine="engine")
    assert deserialize(runtime, b"plan", allow_host_code=False) == "engine"
    assert runtime.engine_host_code_allowed is False and runtime.deserialized == b"plan"
    allowing = StandInRuntime(engine="engine")
    deserialize(allowing, b"plan", allow_host_code=True)
    assert allowing.engine_host_code_allowed is True
    with pytest.raises(EngineDeserializationError, match="could not deserialize model.int8.engine"):
        deserialize(StandInRuntime(engine=None), b"plan", allow_host_code=False, label="model.int8.engine")
    with pytest.raises(NotAvailableError, match="cannot run version-compatible engines"):
        deserialize(StandInRuntimeBefore86(engine="e"), b"plan", allow_host_code=True, version="8.5")


def _runner(engine: Path, version_compatible: bool) -> TensorRTRunner:
    sidecar = {
        "inputs": [{"name": "input", "shape": [-1, 3, 32, 32], "dtype": "float32"}],
        "outputs": [{"name": "logits", "shape": [-1, 10], "dtype": "float32"}],
        "profile": {"input": {"min": [1, 3, 32, 32], "opt": [4, 3, 32, 32], "max": [16, 3, 32, 32]}},
        "options": {"version_compatible": version_compatible},
    }
    return TensorRTRunner(engine, b"engine bytes", sidecar)


def test_runner_hands_polygraphy_our_deserializer_not_engine_from_bytes(tmp_path: Path) -> None:
    from polygraphy.backend.trt import TrtRunner

    trt_runner = _runner(tmp_path / "model.int8.engine", version_compatible=False).polygraphy_runner()
    assert isinstance(trt_runner, TrtRunner)
    assert trt_runner._engine_or_context == EngineDeserializer(b"engine bytes", False, "model.int8.engine")
    compatible = _runner(tmp_path / "model.int8.engine", version_compatible=True).polygraphy_runner()
    assert compatible._engine_or_context.allow_host_code is True
    assert _runner(tmp_path / "m.engine", False).batch_range == (1, 16)


# --- enum settings, TensorRT binding errors and the timing cache (item 9) ------------------------------------------

@pytest.fixture
def trt_without_hardware_levels(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    """A stand-in ``tensorrt`` module of a release before HardwareCompatibilityLevel (TensorRT 8.5)."""
    module = types.ModuleType("tensorrt")
    module.__version__ = "8.5.3"
    module.MemoryPoolType = types.SimpleNamespace(WORKSPACE="workspace")
    monkeypatch.setitem(sys.modules, "tensorrt", module)
    return module


class StandInConfig:
    """``IBuilderConfig``'s setters as used by ``TrtEnumSettings``; ``refuse`` makes the pool setter raise."""

    def __init__(self, refuse: bool = False) -> None:
        self.refuse, self.pools = refuse, {}

    def set_memory_pool_limit(self, pool: str, size: int) -> None:
        if self.refuse:
            raise RuntimeError("invalid argument")
        self.pools[pool] = size


def test_enum_settings_name_the_option_instead_of_a_traceback(trt_without_hardware_levels: types.ModuleType) -> None:
    config = StandInConfig()
    TrtEnumSettings(workspace_bytes=1 << 20)(None, None, config)
    assert config.pools == {"workspace": 1 << 20}
    with pytest.raises(NotAvailableError, match=r"TensorRT 8.5.3 has no HardwareCompatibilityLevel.AMPERE_PLUS") as info:
        TrtEnumSettings(hardware_compatibility_level="AMPERE_PLUS")(None, None, config)
    assert "--hardware-compatible" in str(info.value)
    with pytest.raises(NotAvailableError, match=r"refused MemoryPoolType.WORKSPACE for --workspace-mb: invalid argument"):
        TrtEnumSettings(workspace_bytes=1)(None, None, StandInConfig(refuse=True))


def test_binding_errors_inside_the_build_become_clear_errors() -> None:
    from polygraphy.exception import PolygraphyException

    def raising(exc: Exception):  # type: ignore[no-untyped-def]
        def loader() -> bytes:
            raise exc
        return loader

    with pytest.raises(NotAvailableError, match="TensorRT failed while building model.onnx: RuntimeError: boom"):
        list(build_engine_bytes(raising(RuntimeError("boom")), "model.onnx"))
    with pytest.raises(NotAvailableError, match="AttributeError"):
        list(build_engine_bytes(raising(AttributeError("no such flag")), "model.onnx"))
    with pytest.raises(InputError, match="TensorRT could not build model.onnx: PolygraphyException: boom") as info:
        list(build_engine_bytes(raising(PolygraphyException("boom")), "model.onnx"))
    assert info.value.hint == "see TensorRT's log above; run with --debug for the traceback"
    with pytest.raises(NotAvailableError, match="kept as is"):
        list(build_engine_bytes(raising(NotAvailableError("kept as is")), "model.onnx"))


# TensorRT's log lines as Polygraphy's TensorRT logger prints them, then Polygraphy's generic exception
INVALID_ENGINE = "Invalid Engine. Please ensure the engine was built correctly"
BUILD_LOGS = {
    "out of memory": "[E] [TRT] Error Code 2: OutOfMemory (Requested size was 34359738368 bytes.)",
    "driver": "[E] [TRT] Error Code 1: Cuda Runtime (CUDA driver version is insufficient for CUDA runtime version)",
    "parse": "[E] [TRT] ModelImporter.cpp:949: ERROR: In node 12 with name: /conv/QuantizeLinear: UNSUPPORTED_NODE",
}


@pytest.mark.parametrize("kind", list(BUILD_LOGS))
def test_build_failures_get_the_hint_of_their_kind(kind: str, capsys: pytest.CaptureFixture[str]) -> None:
    from polygraphy.exception import PolygraphyException

    from resnext_deploy.engines.tensorrt.failures import HINTS

    def loader() -> bytes:
        print(BUILD_LOGS[kind])  # Polygraphy's TensorRT logger prints to stdout
        raise PolygraphyException(INVALID_ENGINE if kind != "parse" else "Could not parse ONNX correctly")

    expected = InputError if kind == "parse" else NotAvailableError
    with pytest.raises(expected) as info:
        list(build_engine_bytes(loader, "model.int8.onnx"))
    assert type(info.value) is expected and info.value.hint == HINTS[kind]
    assert info.value.exit_code == 2 and "TensorRT could not build model.int8.onnx" in info.value.message
    assert BUILD_LOGS[kind] in capsys.readouterr().out  # the log still reaches the user


def test_warnings_do_not_decide_the_kind(capsys: pytest.CaptureFixture[str]) -> None:
    from polygraphy.exception import PolygraphyException

    def loader() -> bytes:  # a successful build's warning, then a failure of another kind
        print("[W] [TRT] Tactic Device request: 4096MB Available: 2048MB. Device memory is insufficient to use tactic.")
        print("[E] [TRT] Error Code 9: API Usage Error (Some tactics do not have sufficient workspace memory)")
        raise PolygraphyException(INVALID_ENGINE)

    with pytest.raises(InputError) as info:
        list(build_engine_bytes(loader, "model.onnx"))
    assert info.value.hint == "see TensorRT's log above; run with --debug for the traceback"


def test_failures_during_inference_are_mapped(onnx_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from polygraphy.exception import PolygraphyException

    from resnext_deploy.engines.tensorrt.failures import HINTS

    class StandInTrtRunner:
        """Polygraphy's ``TrtRunner`` surface: activate, infer(feed, check_inputs), deactivate."""

        def __init__(self, log: str) -> None:
            self.log = log

        def activate(self) -> None: ...
        def deactivate(self) -> None: ...

        def infer(self, feed: dict[str, object], check_inputs: bool = True) -> dict[str, object]:
            print(self.log)
            raise PolygraphyException("`execute_async_v3()` failed. Please see the logging output above for details.")

    sidecar = {"inputs": [{"name": "input", "shape": [-1, 3, 32, 32], "dtype": "float32"}],
               "outputs": [{"name": "logits", "shape": [-1, 10], "dtype": "float32"}],
               "profile": {"input": {"min": [1, 3, 32, 32], "opt": [2, 3, 32, 32], "max": [4, 3, 32, 32]}}}

    def runner_logging(log: str) -> TensorRTRunner:
        class Runner(TensorRTRunner):
            def polygraphy_runner(self) -> StandInTrtRunner:
                return StandInTrtRunner(log)
        return Runner(tmp_path / "model.int8.engine", b"plan", sidecar)

    feed = {"input": np.zeros((2, 3, 32, 32), np.float32)}
    with runner_logging(BUILD_LOGS["out of memory"]) as runner, pytest.raises(NotAvailableError) as info:
        runner.infer(feed)
    assert "TensorRT inference failed on model.int8.engine (batch 2)" in info.value.message
    assert "execute_async_v3" in info.value.message and info.value.hint == HINTS["out of memory"]
    with runner_logging("[E] [TRT] IExecutionContext::enqueueV3: Error Code 1: Cask (illegal memory access)") as runner:
        with pytest.raises(NotAvailableError) as info:
            runner.infer(feed)
    assert "resnext-deploy build" in info.value.hint  # no known kind: rebuild on this machine, see the log


def test_a_builder_that_cannot_be_created_for_the_timing_cache_is_a_clear_error(tmp_path: Path) -> None:
    from resnext_deploy.engines.tensorrt.failures import HINTS

    cache = tmp_path / "timing.cache"
    cache.write_bytes(b"cache")

    def no_builder() -> tuple[object, object]:
        print("[E] [TRT] CUDA initialization failure with error: 35")
        raise TypeError("pybind11::init(): factory function returned nullptr")

    with pytest.raises(NotAvailableError) as info:
        drop_stale_timing_cache(cache, no_builder)
    assert "could not create a builder to check the timing cache" in info.value.message
    assert info.value.hint == HINTS["driver"] and cache.is_file()  # nothing removed
    with pytest.raises(NotAvailableError, match="could not create a builder config"):
        drop_stale_timing_cache(cache, lambda: (object(), None))
    assert list(build_engine_bytes(lambda: b"plan", "model.onnx")) == [b"plan"]


class StandInTimingConfig:
    """``IBuilderConfig.create_timing_cache``/``set_timing_cache`` as documented, for one kind of cache file."""

    def __init__(self, kind: str) -> None:
        self.kind = kind

    def create_timing_cache(self, data: bytes) -> object | None:
        if self.kind == "damaged":
            raise RuntimeError("Deserialization failed")
        return None if self.kind == "other-version" else object()

    def set_timing_cache(self, cache: object, ignore_mismatch: bool) -> bool:
        assert ignore_mismatch is False
        return self.kind != "other-gpu"


@pytest.mark.parametrize(("kind", "reason"), [
    ("good", None),
    ("damaged", "TensorRT cannot read it (Deserialization failed)"),
    ("other-version", "TensorRT cannot read it (written by another TensorRT version, or damaged)"),
    ("other-gpu", "it was written on another GPU or CUDA version"),
])
def test_stale_timing_cache_is_rebuilt_with_a_warning(kind: str, reason: str | None, tmp_path: Path,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    assert timing_cache_problem(StandInTimingConfig(kind), b"cache") == reason
    cache = tmp_path / "timing.cache"
    cache.write_bytes(b"cache")
    with caplog.at_level(logging.WARNING, logger="resnext_deploy.engines.tensorrt.timing_cache"):
        assert drop_stale_timing_cache(cache, lambda: (None, StandInTimingConfig(kind))) == reason
    assert cache.exists() is (reason is None)  # a stale file is removed; Polygraphy then saves a fresh one there
    assert ("is stale" in caplog.text) is (reason is not None)
    assert drop_stale_timing_cache(tmp_path / "absent.cache", lambda: pytest.fail("probed an absent file")) is None


# --- the CUDA runtime Polygraphy needs (item 4) --------------------------------------------------------------------

def test_missing_cuda_runtime_says_where_it_is(tmp_path: Path) -> None:
    searched, wheel = tmp_path / "cuda" / "lib64", tmp_path / "site-packages" / "nvidia" / "cu13" / "lib"
    searched.mkdir(parents=True)
    wheel.mkdir(parents=True)
    (wheel / "libcudart.so.13").write_bytes(b"")
    problem = cuda_runtime_problem([str(searched)], loader_fallback="libcudart-absent.so.0", elsewhere=[str(wheel)])
    assert problem is not None
    message, hint = problem
    assert "Polygraphy cannot find the CUDA runtime (libcudart.so*)" in message and str(searched) in message
    assert hint == f"it is at {wheel / 'libcudart.so.13'}; run `export LD_LIBRARY_PATH={wheel}:$LD_LIBRARY_PATH` and retry"
    nowhere = cuda_runtime_problem([str(searched)], loader_fallback="libcudart-absent.so.0", elsewhere=[])
    assert nowhere is not None and "pip install nvidia-cuda-runtime-cu12" in nowhere[1]
    assert "tensorrt-cu13: pip install 'nvidia-cuda-runtime==13.*'" in nowhere[1]
    (searched / "libcudart.so.12").write_bytes(b"")
    assert cuda_runtime_problem([str(searched)], loader_fallback="libcudart-absent.so.0", elsewhere=[]) is None


def _fake_wheel(root: Path, layout: tuple[str, ...], name: str, loadable: bool = True) -> Path:
    """``root/<layout>/<name>``: a copy of a real shared object (so ``ctypes`` loads it), or an empty file."""
    import _ctypes

    folder = root.joinpath(*layout)
    folder.mkdir(parents=True, exist_ok=True)
    library = folder / name
    library.write_bytes(Path(_ctypes.__file__).read_bytes() if loadable else b"")
    return library


@pytest.mark.parametrize(("layout", "name"), [(("nvidia", "cu13", "lib"), "libcudart.so.13"),
                                              (("nvidia", "cuda_runtime", "lib"), "libcudart.so.12")])
def test_a_wheel_cuda_runtime_is_made_loadable_for_polygraphy_in_process(
    layout: tuple[str, ...], name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from polygraphy import util as polygraphy_util
    from polygraphy.cuda.cuda import _find_cuda_lib_dirs

    from resnext_deploy.engines.tensorrt.cuda_runtime import make_cudart_loadable, wheel_cudart_dirs

    site_packages = tmp_path / "site-packages"
    library = _fake_wheel(site_packages, layout, name)
    _fake_wheel(tmp_path / "broken", layout, name, loadable=False)
    monkeypatch.setenv("LD_LIBRARY_PATH", "/opt/other/lib")
    pip_only = [str(tmp_path / "empty")]  # a pip-only machine: nothing in Polygraphy's own folders
    candidates = [*wheel_cudart_dirs([str(tmp_path / "broken")]), *wheel_cudart_dirs([str(site_packages)])]
    assert make_cudart_loadable(pip_only, candidates) == library  # the empty file is skipped: it does not load
    assert os.environ["LD_LIBRARY_PATH"] == f"{library.parent}:/opt/other/lib"
    # Polygraphy's own search, run now as its CUDA wrapper would run it, loads that library first
    assert polygraphy_util.find_in_dirs("libcudart.so*", _find_cuda_lib_dirs())[0] == str(library)
    assert cuda_runtime_problem() is None
    assert make_cudart_loadable([str(library.parent)], candidates) is None  # found where Polygraphy looks: no change


def test_nothing_changes_once_polygraphys_wrapper_exists_or_nothing_loads(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    import polygraphy.cuda.cuda as polygraphy_cuda

    from resnext_deploy.engines.tensorrt.cuda_runtime import make_cudart_loadable, wheel_cudart_dirs

    library = _fake_wheel(tmp_path / "site-packages", ("nvidia", "cu13", "lib"), "libcudart.so.13")
    monkeypatch.setenv("LD_LIBRARY_PATH", "")
    candidates = wheel_cudart_dirs([str(tmp_path / "site-packages")])
    assert candidates == [str(library.parent)]
    monkeypatch.setattr(polygraphy_cuda, "G_CUDA", object())  # it searched once, at creation, and never again
    assert make_cudart_loadable([str(tmp_path / "empty")], candidates) is None
    monkeypatch.setattr(polygraphy_cuda, "G_CUDA", None)
    broken = _fake_wheel(tmp_path / "broken", ("nvidia", "cu13", "lib"), "libcudart.so.13", loadable=False)
    assert make_cudart_loadable([str(tmp_path / "empty")], [str(broken.parent)]) is None
    assert os.environ["LD_LIBRARY_PATH"] == ""


def test_the_installed_cuda_runtime_wheel_is_found_where_it_really_lies() -> None:
    import ctypes
    import importlib.metadata

    from resnext_deploy.engines.tensorrt.cuda_runtime import find_cudart, wheel_cudart_dirs

    try:
        runtime = importlib.metadata.version("nvidia-cuda-runtime")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("no nvidia-cuda-runtime wheel installed here")
    major = runtime.split(".")[0]
    found = [path for path in find_cudart(wheel_cudart_dirs()) if path.name == f"libcudart.so.{major}"]
    assert found and found[0].parent.parts[-3:] == ("nvidia", f"cu{major}", "lib"), found
    ctypes.CDLL(str(found[0]))  # loads without a GPU: the runtime needs the driver only when it is first called


def test_the_tensorrt_extra_is_the_cuda_build_of_the_rest_of_the_environment() -> None:
    import importlib.metadata
    import re
    import tomllib

    import torch

    root = Path(__file__).resolve().parents[2]
    extra = tomllib.loads((root / "pyproject.toml").read_text())["project"]["optional-dependencies"]["tensorrt"]
    majors = {match for requirement in extra for match in re.findall(r"^tensorrt-cu(\d+)\b", requirement)}
    assert len(majors) == 1, extra  # one CUDA build named, never the metapackage that picks one by its version
    major = majors.pop()
    assert re.search(rf"^tensorrt-cu{major}==", (root / "constraints.txt").read_text(), re.MULTILINE)
    if torch.version.cuda:
        assert torch.version.cuda.split(".")[0] == major, torch.version.cuda
    try:
        assert importlib.metadata.version("nvidia-cuda-runtime").split(".")[0] == major
    except importlib.metadata.PackageNotFoundError:
        pass


def test_polygraphy_search_dirs_are_polygraphys_own() -> None:
    dirs = polygraphy_search_dirs()
    assert "/usr/local/cuda/lib64" in dirs and any(d.endswith("nvidia/cuda_runtime/lib") for d in dirs)
    assert not any(d.endswith("nvidia/cu13/lib") for d in dirs)  # the CUDA 13 wheel layout it misses


# --- the engine inspector's per-layer precisions -------------------------------------------------------------------

TRT10_LAYERS = {
    "Layers": [
        {"Name": "/conv1/Conv + /act1/Relu", "LayerType": "CaskConvolution", "ParameterType": "Convolution", "Groups": 1,
         "Inputs": [{"Name": "x", "Dimensions": [8, 3, 224, 224], "Format/Datatype": "Thirty-two wide channel vectorized row major Int8 format."}],
         "Outputs": [{"Name": "y", "Dimensions": [8, 64, 112, 112], "Format/Datatype": "Thirty-two wide channel vectorized row major Int8 format."}],
         "Weights": {"Type": "Int8", "Count": 9408}},
        {"Name": "/layer1/conv2/Conv", "LayerType": "CaskGemmConvolution", "ParameterType": "Convolution", "Groups": 32,
         "Inputs": [{"Name": "a", "Format/Datatype": "Channel major FP16 format where channel % 8 == 0"}],
         "Outputs": [{"Name": "b", "Format/Datatype": "Channel major FP16 format where channel % 8 == 0"}],
         "Weights": {"Type": "Half", "Count": 4608}},
        {"Name": "/global_pool/GlobalAveragePool", "LayerType": "CaskPooling", "ParameterType": "Pooling",
         "Inputs": [{"Name": "b", "Format/Datatype": "Row major linear FP16 format"}],
         "Outputs": [{"Name": "c", "Format/Datatype": "Row major linear FP16 format"}]},
    ],
    "Bindings": ["input", "logits"],
}


def test_inspector_layers_say_which_convs_run_int8() -> None:
    layers = parse_engine_information(TRT10_LAYERS)
    assert [layer.precision for layer in layers if layer.convolution] == ["INT8", "FP16"]
    summary = summarize(layers)
    assert summary["dense_convolutions"] == {"INT8": 1} and summary["grouped_convolutions"] == {"FP16": 1}
    assert summary["not_int8"] == ["/layer1/conv2/Conv (FP16)"] and summary["detailed"] is True
    trt11 = {"Name": "c", "LayerType": "CaskConvolution", "ParameterType": "Convolution", "Groups": 1,
             "Inputs": [{"Name": "x", "Datatype": "Int8", "Format": "Thirty-two wide channel vectorized row major"}]}
    assert parse_engine_information({"Layers": [trt11]})[0].precision == "INT8"  # TensorRT 11 split the key
    assert data_type({"Format/Datatype": "Row major linear FP32"}) == "FP32"
    names_only = summarize(parse_engine_information({"Layers": ["/conv1/Conv + /act1/Relu"]}))
    assert names_only["detailed"] is False and names_only["convolutions"] == {}


# Records in the inspector's documented shapes that the first version missed (not captured on a GPU here): a
# convolution fused with its activation and pooling (ParameterType ConvActPool, as TensorRT's engine explorer shows
# them), and the DataType spelling of the split TensorRT 11 keys.
FUSED_AND_RESPELLED = {
    "Layers": [
        {"Name": "/stem/conv1/Conv + /stem/act1/Relu + /stem/pool/MaxPool", "LayerType": "CaskConvActPool",
         "ParameterType": "ConvActPool", "Kernel": [3, 3], "Groups": 1, "Activation": "RELU", "PoolingType": "MAX",
         "Inputs": [{"Name": "x", "Dimensions": [8, 3, 224, 224], "Format/Datatype": "Row major linear Int8 format"}],
         "Outputs": [{"Name": "y", "Dimensions": [8, 32, 56, 56], "Format/Datatype": "Row major linear Int8 format"}],
         "Weights": {"Type": "Int8", "Count": 864}},
        {"Name": "/layer1/conv1/Conv + /layer1/act1/Relu", "LayerType": "CaskConvolution", "ParameterType": "Convolution",
         "Groups": 1, "Inputs": [{"Name": "y", "DataType": "Int8", "Format": "Thirty-two wide channel vectorized row major"}],
         "Outputs": [{"Name": "z", "DataType": "Int8", "Format": "Thirty-two wide channel vectorized row major"}],
         "Weights": {"DataType": "Int8", "Count": 8192}},
        {"Name": "/layer1/conv2/Conv", "LayerType": "CaskConvolution", "ParameterType": "Convolution", "Groups": 8,
         "Inputs": [{"Name": "z", "DataType": "Half", "Format": "Channel major"}], "Outputs": [{"Name": "w", "DataType": "Half"}]},
    ],
    "Bindings": ["input", "logits"],
}


def test_fused_conv_act_pool_records_and_the_datatype_spelling_are_counted() -> None:
    from resnext_deploy.engines.tensorrt.layers import precision_problem

    layers = parse_engine_information(FUSED_AND_RESPELLED)
    assert [(layer.convolution, layer.precision) for layer in layers] == [(True, "INT8"), (True, "INT8"), (True, "FP16")]
    summary = summarize(layers)
    assert summary["dense_convolutions"] == {"INT8": 2} and summary["grouped_convolutions"] == {"FP16": 1}
    assert summary["layer_types"]["CaskConvActPool"] == 1
    assert precision_problem(summary, "int8") is None  # both dense convolutions, the fused one included, run INT8
    assert "outside FP16" in str(precision_problem(summary, "fp16"))


# --- the rebuild hint names commands that exist ---------------------------------------------------------------------

def test_rebuild_hint_names_commands_that_work(tmp_path: Path, tiny_int8_onnx: Path, tiny_cpu_int8_onnx: Path) -> None:
    from typer.testing import CliRunner

    from resnext_deploy.cli import app

    export_dir = tmp_path / "export"
    export_dir.mkdir()
    assert rebuild_hint(export_dir / "model.int8.engine") == (
        f"rebuild it on this machine: `resnext-deploy build {export_dir / 'model.int8.onnx'} --backend tensorrt`"
    )
    assert f"build {export_dir / 'model.onnx'} --backend" in rebuild_hint(export_dir / "model.fp32.engine")
    sidecar = {"source_onnx": {"path": "model.int8.tensorrt.onnx"}}
    assert f"build {export_dir / 'model.int8.tensorrt.onnx'} --backend" in rebuild_hint(export_dir / "model.int8.engine", sidecar)
    bundle_dir = tmp_path / "bundle"
    bundle_dir.mkdir()
    (bundle_dir / "manifest.json").write_text("{}")
    assert rebuild_hint(bundle_dir / "model.int8.engine") == (
        f"rebuild it on this machine: `resnext-deploy build {bundle_dir} --backend tensorrt`"
    )
    # the hinted command: `build` on a bare ONNX checks the artifact first, then TensorRT's availability
    cpu_recipe = Path(shutil.copy(tiny_cpu_int8_onnx, export_dir / "model.int8.onnx"))
    refused = CliRunner().invoke(app, ["build", str(cpu_recipe), "--backend", "tensorrt"])
    assert refused.exit_code == 2 and "TensorRT cannot parse it" in " ".join(refused.output.split())
    if not TensorRTBackend().available()[0]:
        trt_recipe = Path(shutil.copy(tiny_int8_onnx, tmp_path / "model.int8.onnx"))
        unavailable = CliRunner().invoke(app, ["build", str(trt_recipe), "--backend", "tensorrt"])
        assert unavailable.exit_code == 2 and "TensorRT backend is not available" in unavailable.output


# --- the GPU test's INT8 fixture is one TensorRT parses (item 1) ----------------------------------------------------

def test_gpu_int8_fixture_is_the_tensorrt_recipe(tiny_int8_onnx: Path, tiny_cpu_int8_onnx: Path) -> None:
    from resnext_deploy.engines.tensorrt.artifact import check_tensorrt_artifact

    findings = check_tensorrt_artifact(tiny_int8_onnx)
    assert findings.parsable and findings.qdq_nodes > 0
    with pytest.raises(InputError, match="quantized with the onnxruntime recipe and TensorRT cannot parse it") as info:
        check_tensorrt_artifact(tiny_cpu_int8_onnx)
    assert "use UINT8" in info.value.message and "non-zero zero points" in info.value.message


# --- the gpu tests' and the check script's weights: residual branches that carry signal (item 6) -------------------

def _logits_without_residual_branches(model, images):  # type: ignore[no-untyped-def]
    import copy

    import torch

    silenced = copy.deepcopy(model)
    for module in silenced.modules():
        if type(module).__name__ == "Bottleneck":
            torch.nn.init.zeros_(module.bn3.weight)
            torch.nn.init.zeros_(module.bn3.bias)
    with torch.no_grad():
        return model(torch.from_numpy(images)).numpy(), silenced(torch.from_numpy(images)).numpy()


@pytest.mark.slow
def test_proxy_weights_make_the_residual_branches_count_unlike_timms_zero_init() -> None:
    import numpy as np

    from bench.proxy_model import build_proxy, natural_images
    from tests.support.tiny import TINY_SPEC, build_tiny

    images = natural_images(8, 32, seed=3)
    proxy = build_proxy(natural_images(32, 32, seed=0), model_name=TINY_SPEC.timm_name,
                        num_classes=TINY_SPEC.num_classes, **TINY_SPEC.timm_kwargs)

    def cosine(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.mean(np.sum(a * b, 1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))))

    with_branches, without = _logits_without_residual_branches(proxy, images)
    assert cosine(with_branches, without) < 0.95  # silencing the branches changes the logits: they carry signal
    default, default_silenced = _logits_without_residual_branches(build_tiny().eval(), images)
    np.testing.assert_allclose(default, default_silenced, rtol=0, atol=1e-6)  # timm's init: branches add exactly 0


# --- the driver is new enough for the TensorRT wheel (item 4) -------------------------------------------------------

class StandInDriver:
    """libcuda's ``cuDriverGetVersion(int*)``: writes the driver's CUDA version (e.g. 12040) and returns CUDA_SUCCESS."""

    def __init__(self, version: int, status: int = 0) -> None:
        self.version, self.status = version, status

    def cuDriverGetVersion(self, pointer) -> int:  # noqa: N802 - the C name  # type: ignore[no-untyped-def]
        pointer._obj.value = self.version  # ctypes.byref(c_int) keeps the c_int in _obj
        return self.status


def test_the_driver_cuda_version_is_read_with_cu_driver_get_version() -> None:
    from resnext_deploy.engines.cuda import driver_cuda_version

    assert driver_cuda_version(StandInDriver(12040)) == (12, 4)
    assert driver_cuda_version(StandInDriver(13000)) == (13, 0)
    assert driver_cuda_version(StandInDriver(13000, status=3)) is None  # CUDA_ERROR_NOT_INITIALIZED and the like


def test_the_installed_tensorrt_wheel_says_which_cuda_it_needs() -> None:
    from resnext_deploy.engines.tensorrt.driver import tensorrt_wheel_cuda

    assert tensorrt_wheel_cuda({"tensorrt": "11.4.0.106", "tensorrt_cu13": "11.4.0.106",
                                "tensorrt_cu13_libs": "11.4.0.106"}) == (13, "tensorrt-cu13 11.4.0.106")
    assert tensorrt_wheel_cuda({"tensorrt-cu12-libs": "10.13.3.9"}) == (12, "tensorrt-cu12 10.13.3.9")
    assert tensorrt_wheel_cuda({"tensorrt": "10.3.0", "tensorrt-libs": "10.3.0"})[0] == 12  # type: ignore[index]
    assert tensorrt_wheel_cuda({"numpy": "2.3.0"}) is None  # JetPack's system TensorRT: no wheel metadata


def test_a_driver_too_old_for_the_wheel_says_exactly_what_to_install() -> None:
    from resnext_deploy.engines.tensorrt.driver import driver_problem

    assert driver_problem((13, 0), (13, "tensorrt-cu13 11.4.0.106")) is None
    assert driver_problem((13, 1), (12, "tensorrt-cu12 10.13.3.9")) is None  # newer drivers run older CUDA
    problem = driver_problem((12, 4), (13, "tensorrt-cu13 11.4.0.106"))
    assert problem is not None
    message, hint = problem
    assert message == "the NVIDIA driver supports CUDA 12.4, but tensorrt-cu13 11.4.0.106 is built for CUDA 13"
    assert hint.startswith("install NVIDIA driver 580.65.06 or newer (CUDA 13.0 or newer)")
    assert "pip install 'tensorrt-cu12>=10.13.2,<12'" in hint
    old = driver_problem((11, 8), (12, "tensorrt-cu12 10.13.3.9"))
    assert old is not None and old[1] == "install NVIDIA driver 525.60.13 or newer (CUDA 12.0 or newer)"
    assert driver_problem(None, (13, "tensorrt-cu13 11.4.0.106")) is None  # no driver: "no CUDA device" says it


def test_an_opset_21_quantize_linear_with_output_dtype_int8_and_no_zero_point_is_int8() -> None:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from resnext_deploy.engines.tensorrt.artifact import qdq_findings

    def graph(**attributes: int) -> onnx.ModelProto:
        scale = numpy_helper.from_array(np.array(0.05, np.float32), "scale")
        nodes = [helper.make_node("QuantizeLinear", ["x", "scale"], ["q"], name="q", **attributes),
                 helper.make_node("DequantizeLinear", ["q", "scale"], ["y"], name="dq")]
        model = helper.make_model(
            helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])], [scale]),
            opset_imports=[helper.make_opsetid("", 21)])
        onnx.checker.check_model(model, full_check=True)  # a valid opset-21 graph, types inferred
        return model

    int8 = qdq_findings(graph(output_dtype=TensorProto.INT8))
    assert int8.qdq_nodes == 2 and int8.parsable, int8
    assert qdq_findings(graph()).not_int8 == {"q": "UINT8"}  # unset: the ONNX default, UINT8
    assert qdq_findings(graph(output_dtype=TensorProto.UINT8)).not_int8 == {"q": "UINT8"}


# --- batches below a profile's minimum (item 5) --------------------------------------------------------------------

def _profiled_onnxruntime():  # type: ignore[no-untyped-def]
    """ONNX Runtime whose runners take batches 2..4 only, as a TensorRT engine built with --min-batch 2 --max-batch 4."""
    from resnext_deploy.engines.onnxruntime import OnnxRuntimeBackend
    from resnext_deploy.engines.onnxruntime.runner import OnnxRuntimeRunner

    class ProfiledRunner(OnnxRuntimeRunner):
        @property
        def batch_range(self) -> tuple[int, int | None]:
            return 2, 4

        def check_batch(self, feed: dict[str, np.ndarray]) -> None:
            if not 2 <= len(next(iter(feed.values()))) <= 4:
                raise InputError("outside the engine's profile 2..4")

    class ProfiledBackend(OnnxRuntimeBackend):
        def load(self, artifact_or_path, options=None):  # type: ignore[no-untyped-def]
            runner = super().load(artifact_or_path, options)
            runner.__class__ = ProfiledRunner
            return runner

    return ProfiledBackend()


@pytest.mark.slow
def test_mixed_precision_latency_is_measured_at_the_profiles_smallest_batch(tiny_onnx: Path,
                                                                            tiny_cpu_int8_onnx: Path) -> None:
    import onnx

    from resnext_deploy.export.mixed_precision import _LatencyProbe

    probe = _LatencyProbe(_profiled_onnxruntime(), tiny_onnx, BuildOptions(min_batch=2, opt_batch=2, max_batch=4))
    try:
        ratio = probe.ratio(onnx.load(str(tiny_cpu_int8_onnx)))  # batch 1 does not exist here: it was a KeyError
    finally:
        probe.close()
    assert ratio > 0


def test_a_last_batch_below_the_profile_minimum_is_padded_and_cut_back(onnx_copy: Path) -> None:
    from engines_testlib import batch

    backend = _profiled_onnxruntime()
    feed = batch(3)
    with backend.load(onnx_copy) as runner:
        with pytest.raises(InputError, match="profile 2..4"):
            runner.infer({"input": feed["input"][:1]})
        one = runner.infer_padded({"input": feed["input"][:1]})["logits"]
        three = runner.infer_padded(feed)["logits"]
    assert one.shape == (1, 10)
    np.testing.assert_allclose(one[0], three[0], rtol=1e-5, atol=1e-5)  # the padding does not change the real item


# --- Jetson: JetPack's own TensorRT, and its version limits (item 8) ------------------------------------------------

def test_jetpack_releases_are_read_and_their_tensorrt_limits_said(tmp_path: Path) -> None:
    from resnext_deploy.engines.tensorrt.support import jetson_release, tensorrt_version_problem

    tegra = tmp_path / "nv_tegra_release"
    tegra.write_text("# R36 (release), REVISION: 4.0, GCID: 37537400, BOARD: generic, EABI: aarch64, DATE: Fri Sep 13\n")
    assert jetson_release(tegra) == (36, 4)
    assert jetson_release(tmp_path / "absent") is None  # not a Jetson
    assert tensorrt_version_problem("10.3.0.30", (36, 4)) is None  # JetPack 6.1/6.2's TensorRT runs here
    old = tensorrt_version_problem("8.6.2.3", (36, 3))
    assert old is not None and "TensorRT 8.6.2.3 is older than 10.1" in old[0] and "JetPack 6.0, TensorRT 8.6" in old[0]
    assert "JetPack 6.1 or newer" in old[1] and "--system-site-packages" in old[1]
    assert "--backend onnxruntime" in tensorrt_version_problem("8.5.2", None)[1]  # type: ignore[index]


@pytest.mark.parametrize(("version", "reason"), [("8.6.2", "older than 10.1"), ("10.3.0", "no CUDA device")])
def test_a_system_tensorrt_is_checked_up_to_the_device(version: str, reason: str, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """JetPack's python3-libnvinfer is a plain ``tensorrt`` package in dist-packages: a stand-in with its version."""
    from resnext_deploy.engines.cuda import cuda_devices

    if cuda_devices():
        pytest.skip("a CUDA device is present: the real TensorRT is checked by the gpu tests")
    package = tmp_path / "dist-packages" / "tensorrt"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(f"__version__ = {version!r}\n")
    monkeypatch.syspath_prepend(str(package.parent))
    monkeypatch.delitem(sys.modules, "tensorrt", raising=False)
    try:
        ok, why, _hint = TensorRTBackend().availability()
    finally:
        sys.modules.pop("tensorrt", None)  # the stand-in must not outlive this test
    assert not ok and reason in why, why
