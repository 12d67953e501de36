"""INT8 Q/DQ quantization of a tiny ResNeXt: recipes checked on the graph, cache, methods, bad inputs."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, numpy_helper

from resnext_deploy.calibration.quantize import QuantizeConfig, quantize_int8
from resnext_deploy.calibration.recipes import grouped_conv_nodes
from resnext_deploy.errors import InputError, UsageError
from resnext_deploy.metadata import read_metadata
from tests.calibration.quant_support import SIZE, export_random_tiny, min_cosine, run, smooth_images


@pytest.fixture(scope="module")
def tiny_fp32(tmp_path_factory: pytest.TempPathFactory, copy_random_tiny) -> Path:  # type: ignore[no-untyped-def]
    return copy_random_tiny(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def calib() -> np.ndarray:
    return smooth_images(32, seed=2)


@pytest.fixture(scope="module")
def heldout() -> np.ndarray:
    return smooth_images(16, seed=3)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")


class Graph:
    """Producer/consumer lookups over an ONNX graph."""

    def __init__(self, path: Path) -> None:
        self.model = onnx.load(str(path))
        self.nodes = list(self.model.graph.node)
        self.init = {i.name: numpy_helper.to_array(i) for i in self.model.graph.initializer}
        self.producer = {o: n for n in self.nodes for o in n.output}
        self.consumers: dict[str, list[onnx.NodeProto]] = {}
        for node in self.nodes:
            for name in node.input:
                self.consumers.setdefault(name, []).append(node)

    def of_type(self, op_type: str) -> list[onnx.NodeProto]:
        return [n for n in self.nodes if n.op_type == op_type]

    def by_name(self, name: str) -> onnx.NodeProto:
        return next(n for n in self.nodes if n.name == name)

    def source_op(self, tensor: str) -> str:
        node = self.producer.get(tensor)
        return node.op_type if node is not None else ("initializer" if tensor in self.init else "graph input")

    def weight_dq(self, conv: onnx.NodeProto) -> onnx.NodeProto | None:
        node = self.producer.get(conv.input[1])
        return node if node is not None and node.op_type == "DequantizeLinear" else None


def _axis(node: onnx.NodeProto) -> int:
    return next((a.i for a in node.attribute if a.name == "axis"), 1)


@pytest.fixture(scope="module")
def ort_int8(tiny_fp32: Path, calib: np.ndarray, cache_dir: Path):  # type: ignore[no-untyped-def]
    return quantize_int8(tiny_fp32, tiny_fp32.with_name("model.int8.onnx"), calib, QuantizeConfig(manifest_sha256="m1", method="minmax", recipe="onnxruntime", cache_dir=cache_dir, progress=False))


@pytest.fixture(scope="module")
def trt_int8(tiny_fp32: Path, calib: np.ndarray, cache_dir: Path, ort_int8):  # type: ignore[no-untyped-def]
    return quantize_int8(tiny_fp32, tiny_fp32.with_name("model.trt.int8.onnx"), calib, QuantizeConfig(manifest_sha256="m1", method="minmax", recipe="tensorrt", cache_dir=cache_dir, progress=False))


def test_onnxruntime_recipe_graph(ort_int8) -> None:  # type: ignore[no-untyped-def]
    graph = Graph(ort_int8.path)
    grouped = grouped_conv_nodes(graph.model)
    assert grouped and sorted(ort_int8.excluded_nodes) == sorted(grouped)
    activation_q = graph.of_type("QuantizeLinear")
    assert activation_q and ort_int8.quantize_linear_nodes == len(activation_q)
    for q in activation_q:
        assert graph.init[q.input[2]].dtype == np.uint8
    convs = [c for c in graph.of_type("Conv") if c.name not in grouped]
    assert convs
    for conv in convs:
        dq = graph.weight_dq(conv)
        assert dq is not None, conv.name
        weight, scale = graph.init[dq.input[0]], graph.init[dq.input[1]]
        assert weight.dtype == np.int8 and _axis(dq) == 0
        assert scale.shape == (weight.shape[0],) and weight.shape[0] > 1
        assert not np.any(graph.init[dq.input[2]])
    for name in grouped:
        conv = graph.by_name(name)
        assert conv.input[1] in graph.init and graph.init[conv.input[1]].dtype == np.float32
        assert all(c.op_type != "QuantizeLinear" for c in graph.consumers[conv.output[0]])


def test_tensorrt_recipe_graph(trt_int8) -> None:  # type: ignore[no-untyped-def]
    graph = Graph(trt_int8.path)
    assert trt_int8.excluded_nodes == [] and trt_int8.activation_type == "QInt8"
    for q in graph.of_type("QuantizeLinear"):
        zero_point = graph.init[q.input[2]]
        assert zero_point.dtype == np.int8 and not np.any(zero_point)
    adds = graph.of_type("Add")
    assert adds and trt_int8.residual_adds_released == len(adds)
    used = {name for node in graph.model.graph.node for name in node.input}
    assert {init.name for init in graph.model.graph.initializer} <= used  # released pairs leave nothing behind
    for add in adds:
        # TensorRT's Conv+Add fusion: the residual branch's conv feeds the Add directly, the shortcut is quantized
        assert [graph.source_op(t) for t in add.input] == ["Conv", "DequantizeLinear"]
    for conv in graph.of_type("Conv") + graph.of_type("Gemm"):
        assert graph.source_op(conv.input[0]) == "DequantizeLinear"
        assert graph.weight_dq(conv) is not None
        for q in graph.consumers.get(conv.output[0], []):
            if q.op_type == "QuantizeLinear":  # only where the conv output is the shortcut input of a residual Add
                assert {c.op_type for dq in graph.consumers[q.output[0]] for c in graph.consumers[dq.output[0]]} == {"Add"}
        if len(conv.input) > 2:
            assert conv.input[2] in graph.init  # float bias: TensorRT fuses it
    for relu in graph.of_type("Relu"):
        for consumer in graph.consumers.get(relu.output[0], []):
            if consumer.op_type == "QuantizeLinear":
                feeds = {c.op_type for dq in graph.consumers[consumer.output[0]] for c in graph.consumers[dq.output[0]]}
                assert feeds <= {"Conv", "Add", "Gemm", "AveragePool", "MaxPool"}, feeds


@pytest.mark.slow
def test_both_exporters_graphs_get_the_same_tensorrt_placement(tmp_path: Path, calib: np.ndarray, trt_int8) -> None:  # type: ignore[no-untyped-def]
    # the dynamo graph (trt_int8) and the TorchScript graph differ in node names and the pooling head
    # (ReduceMean+Reshape vs GlobalAveragePool+Flatten); the TensorRT recipe must treat both alike
    torchscript = export_random_tiny(tmp_path / "model.onnx", exporter="torchscript")
    result = quantize_int8(torchscript, tmp_path / "model.int8.onnx", calib, QuantizeConfig(manifest_sha256="m1", method="minmax", recipe="tensorrt", cache_dir=tmp_path, progress=False))
    assert len(Graph(result.path).of_type("Add")) == result.residual_adds_released == trt_int8.residual_adds_released
    assert (result.quantize_linear_nodes, result.dequantize_linear_nodes) == (
        trt_int8.quantize_linear_nodes, trt_int8.dequantize_linear_nodes)


def test_tensorrt_keep_grouped_float(tiny_fp32: Path, calib: np.ndarray, cache_dir: Path, trt_int8) -> None:  # type: ignore[no-untyped-def]
    result = quantize_int8(tiny_fp32, tiny_fp32.with_name("model.trt-grouped.int8.onnx"), calib, QuantizeConfig(manifest_sha256="m1", method="minmax", recipe="tensorrt", keep_grouped_float=True, cache_dir=cache_dir, progress=False))
    graph = Graph(result.path)
    grouped = grouped_conv_nodes(graph.model)
    assert grouped and sorted(result.excluded_nodes) == sorted(grouped)
    for name in grouped:
        conv = graph.by_name(name)
        assert graph.weight_dq(conv) is None and graph.source_op(conv.input[0]) != "DequantizeLinear"
    default = Graph(trt_int8.path)
    assert all(default.weight_dq(default.by_name(name)) is not None for name in grouped)
    assert result.quantize_linear_nodes < trt_int8.quantize_linear_nodes


def test_metadata_and_result_record(tiny_fp32: Path, ort_int8) -> None:  # type: ignore[no-untyped-def]
    fp32_meta = read_metadata(tiny_fp32)
    meta = read_metadata(ort_int8.path)
    assert meta["precision"] == "int8"
    assert {k: meta[k] for k in fp32_meta} == fp32_meta
    calibration = meta["calibration"]
    assert calibration["method"] == "minmax" and calibration["recipe"] == "onnxruntime"
    assert calibration["size"] == 32 and calibration["manifest_sha256"] == "m1"
    record = ort_int8.to_dict()
    json.dumps(record)
    assert record["excluded_count"] == len(ort_int8.excluded_nodes)
    assert record["calibration_images"] == 32 and record["per_channel"] is True
    assert record["activation_type"] == "QUInt8" and record["weight_type"] == "QInt8"


def _never() -> object:
    raise AssertionError("calibration data was read on a cache hit")
    yield  # pragma: no cover


def test_stats_cache_hit_and_miss(tiny_fp32: Path, calib: np.ndarray, cache_dir: Path, ort_int8, trt_int8) -> None:  # type: ignore[no-untyped-def]
    assert ort_int8.stats_cache_hit is False and ort_int8.stats_source == "calibrated"
    assert trt_int8.stats_cache_hit is True and trt_int8.stats_file == ort_int8.stats_file
    record = json.loads(Path(ort_int8.stats_file).with_suffix(".record.json").read_text())
    assert record["key"]["manifest_sha256"] == "m1" and record["image_count"] == 32
    from onnxruntime.quantization import load_tensors_data

    assert len(load_tensors_data(ort_int8.stats_file).data) > 10  # ORT's own loader reads the entry

    out = tiny_fp32.with_name("cache-check.int8.onnx")
    hit = quantize_int8(tiny_fp32, out, _never(), QuantizeConfig(manifest_sha256="m1", method="minmax", cache_dir=cache_dir, progress=False))
    assert hit.stats_cache_hit and hit.calibration_images == 32
    other_manifest = quantize_int8(tiny_fp32, out, calib[:8], QuantizeConfig(manifest_sha256="m2", method="minmax", cache_dir=cache_dir, progress=False))
    assert not other_manifest.stats_cache_hit and other_manifest.stats_file != ort_int8.stats_file
    other_method = quantize_int8(tiny_fp32, out, calib[:8], QuantizeConfig(manifest_sha256="m1", method="percentile", cache_dir=cache_dir, progress=False))
    assert not other_method.stats_cache_hit and other_method.calibration_images == 8
    other_threshold = quantize_int8(tiny_fp32, out, _never(), QuantizeConfig(manifest_sha256="m1", method="percentile", percentile=99.9, cache_dir=cache_dir, progress=False))
    assert other_threshold.stats_source == "histograms" and other_threshold.stats_key != other_method.stats_key


def test_quantizer_chatter_is_filtered_not_the_root_logger(tiny_fp32: Path, cache_dir: Path, ort_int8,  # type: ignore[no-untyped-def]
                                                          caplog: pytest.LogCaptureFixture) -> None:
    from resnext_deploy.calibration.quantize import _quantizer_chatter_filtered

    caplog.set_level(logging.INFO, logger="resnext_deploy")  # we log at info...
    caplog.set_level(logging.DEBUG)  # ...while the root logger (and the capture) let everything through
    hit = quantize_int8(tiny_fp32, tiny_fp32.with_name("logging-check.int8.onnx"), _never(), QuantizeConfig(manifest_sha256="m1", method="minmax", cache_dir=cache_dir, progress=False))
    assert hit.stats_cache_hit and logging.getLogger().level == logging.DEBUG  # untouched

    from onnxruntime.quantization import qdq_quantizer

    ort_file = qdq_quantizer.__file__

    def emit(level: int, pathname: str) -> None:  # what `logging.info(...)` inside ORT's quantizer produces
        logging.getLogger().handle(logging.LogRecord("root", level, pathname, 1, "msg", None, None))

    caplog.clear()
    with _quantizer_chatter_filtered():
        emit(logging.INFO, ort_file)  # per-tensor chatter: dropped
        emit(logging.WARNING, ort_file)  # a real warning: kept
        emit(logging.INFO, "elsewhere.py")  # anyone else's root records: kept
    emit(logging.INFO, ort_file)  # the filter is gone after the call
    assert [(r.levelno, r.pathname) for r in caplog.records] == [
        (logging.WARNING, ort_file), (logging.INFO, "elsewhere.py"), (logging.INFO, ort_file)]
    caplog.clear()
    caplog.set_level(logging.DEBUG, logger="resnext_deploy")  # --debug shows ORT's chatter too
    with _quantizer_chatter_filtered():
        emit(logging.INFO, ort_file)
    assert len(caplog.records) == 1


def test_cache_dir_from_environment(tiny_fp32: Path, calib: np.ndarray, tmp_path: Path,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RESNEXT_DEPLOY_CACHE", str(tmp_path / "envcache"))
    result = quantize_int8(tiny_fp32, tmp_path / "m.int8.onnx", calib[:4], QuantizeConfig(manifest_sha256="env", method="minmax", progress=False))
    assert Path(result.stats_file).parent == tmp_path / "envcache" / "calibration"


@pytest.mark.parametrize("method", ["entropy", "minmax", "percentile"])
@pytest.mark.parametrize("recipe", ["onnxruntime", "tensorrt"])
def test_methods_run_on_cpu_and_stay_close(tiny_fp32: Path, calib: np.ndarray, heldout: np.ndarray, cache_dir: Path,
                                           method: str, recipe: str) -> None:
    out = tiny_fp32.with_name(f"model.{recipe}.{method}.int8.onnx")
    result = quantize_int8(tiny_fp32, out, calib, QuantizeConfig(manifest_sha256="m1", method=method, recipe=recipe, cache_dir=cache_dir, progress=False))
    assert result.method == method and result.quantize_linear_nodes > 0
    reference, quantized = run(tiny_fp32, heldout), run(out, heldout)
    assert quantized.shape == reference.shape and quantized.dtype == np.float32
    # random weights and 32 calibration images: loose bounds; top-1 is tested on a trained model
    assert min_cosine(reference, quantized) > 0.95
    assert float(np.mean([min_cosine(r[None], q[None]) for r, q in zip(reference, quantized)])) > 0.99


def test_iterable_of_batches(tiny_fp32: Path, calib: np.ndarray, tmp_path: Path) -> None:
    result = quantize_int8(tiny_fp32, tmp_path / "m.int8.onnx", iter([calib[:5], calib[5:9]]), QuantizeConfig(manifest_sha256="it", method="minmax", cache_dir=tmp_path, progress=False))
    assert result.calibration_images == 9 and not result.stats_cache_hit


def test_bad_method_and_recipe(tiny_fp32: Path, calib: np.ndarray, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="method") as err:
        quantize_int8(tiny_fp32, tmp_path / "x.onnx", calib, QuantizeConfig(manifest_sha256="m", method="kl", cache_dir=tmp_path))
    assert "entropy" in str(err.value) and "percentile" in str(err.value)
    with pytest.raises(UsageError, match="recipe") as err:
        quantize_int8(tiny_fp32, tmp_path / "x.onnx", calib, QuantizeConfig(manifest_sha256="m", recipe="int4", cache_dir=tmp_path))
    assert "tensorrt" in str(err.value) and "onnxruntime" in str(err.value) and "openvino" in str(err.value)
    with pytest.raises(UsageError):
        quantize_int8(tiny_fp32, tiny_fp32, calib, QuantizeConfig(manifest_sha256="m", cache_dir=tmp_path))
    assert not (tmp_path / "x.onnx").exists()


def test_bad_calibration_data(tiny_fp32: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="empty"):
        quantize_int8(tiny_fp32, tmp_path / "x.onnx", np.zeros((0, 3, SIZE, SIZE), np.float32), QuantizeConfig(manifest_sha256="m", cache_dir=tmp_path))
    with pytest.raises(InputError, match="no calibration images"):
        quantize_int8(tiny_fp32, tmp_path / "x.onnx", iter([]), QuantizeConfig(manifest_sha256="m", method="minmax", cache_dir=tmp_path, progress=False))
    with pytest.raises(InputError, match=r"\(N, 3, H, W\)"):
        quantize_int8(tiny_fp32, tmp_path / "x.onnx", np.zeros((2, 1, SIZE, SIZE), np.float32), QuantizeConfig(manifest_sha256="m", method="minmax", cache_dir=tmp_path, progress=False))
    assert not (tmp_path / "x.onnx").exists()


def test_bad_model_files(tiny_fp32: Path, calib: np.ndarray, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not found"):
        quantize_int8(tmp_path / "missing.onnx", tmp_path / "x.onnx", calib, QuantizeConfig(manifest_sha256="m", cache_dir=tmp_path))
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"not an onnx model")
    with pytest.raises(InputError, match="cannot read"):
        quantize_int8(garbage, tmp_path / "x.onnx", calib, QuantizeConfig(manifest_sha256="m", cache_dir=tmp_path))
    model = onnx.load(str(tiny_fp32))
    model.graph.input[0].name = "pixels"
    for node in model.graph.node:
        node.input[:] = ["pixels" if name == "input" else name for name in node.input]
    renamed = tmp_path / "renamed.onnx"
    onnx.save(model, str(renamed))
    with pytest.raises(InputError, match="expected one named 'input'"):
        quantize_int8(renamed, tmp_path / "x.onnx", calib, QuantizeConfig(manifest_sha256="m", cache_dir=tmp_path))
    assert model.graph.input[0].type.tensor_type.elem_type == TensorProto.FLOAT
