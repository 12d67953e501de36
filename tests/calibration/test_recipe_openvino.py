"""The openvino INT8 recipe: every conv quantized (grouped too), symmetric per-channel weights, u8 activations, float bias."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from resnext_deploy.calibration.quantize import QuantizeConfig, quantize_int8
from resnext_deploy.calibration.recipes import get_recipe, grouped_conv_nodes
from tests.calibration.quant_support import min_cosine, run, smooth_images
from tests.calibration.test_quantize import Graph, _axis


@pytest.fixture(scope="module")
def ov_int8(tmp_path_factory: pytest.TempPathFactory, copy_random_tiny):  # type: ignore[no-untyped-def]
    fp32 = copy_random_tiny(tmp_path_factory.mktemp("tiny-ov"))
    result = quantize_int8(fp32, fp32.with_name("model.int8.onnx"), smooth_images(32, seed=2), QuantizeConfig(manifest_sha256="ov", method=get_recipe("openvino").default_method, recipe="openvino", cache_dir=fp32.parent / "cache", progress=False))
    return fp32, result


def test_openvino_recipe_graph(ov_int8) -> None:  # type: ignore[no-untyped-def]
    _, result = ov_int8
    graph = Graph(result.path)
    assert result.recipe == "openvino" and result.excluded_nodes == [] and result.activation_type == "QUInt8"
    assert grouped_conv_nodes(graph.model)
    for conv in graph.of_type("Conv"):  # grouped convs included
        assert graph.source_op(conv.input[0]) == "DequantizeLinear", conv.name
        dq = graph.weight_dq(conv)
        assert dq is not None, conv.name
        weight, scale = graph.init[dq.input[0]], graph.init[dq.input[1]]
        assert weight.dtype == np.int8 and _axis(dq) == 0 and scale.shape == (weight.shape[0],)
        assert not np.any(graph.init[dq.input[2]])  # symmetric weights
        if len(conv.input) > 2:
            assert conv.input[2] in graph.init and graph.init[conv.input[2]].dtype == np.float32  # float bias
    for q in graph.of_type("QuantizeLinear"):
        assert graph.init[q.input[2]].dtype == np.uint8


def test_openvino_recipe_keeps_named_layers_in_float(ov_int8, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    fp32, _ = ov_int8
    from resnext_deploy.calibration.recipes import openvino_recipe

    kept = quantize_int8(fp32, tmp_path / "model.int8.onnx", smooth_images(32, seed=2), QuantizeConfig(manifest_sha256="ov", method="minmax", recipe=openvino_recipe(keep_grouped_float=True), cache_dir=fp32.parent / "cache", progress=False))
    assert kept.stats_cache_hit and sorted(kept.excluded_nodes) == sorted(grouped_conv_nodes(Graph(kept.path).model))


def test_openvino_recipe_accuracy_on_onnx_runtime(ov_int8) -> None:  # type: ignore[no-untyped-def]
    fp32, result = ov_int8
    held = smooth_images(16, seed=3)
    # random weights and 32 calibration images: a loose bound, as in test_quantize.py; top-1 is tested on a trained model
    assert min_cosine(run(fp32, held), run(result.path, held)) > 0.98
