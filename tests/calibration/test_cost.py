"""The cost-aware fallback order: equal sensitivity, the layer that is cheaper on the engine goes float first."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from resnext_deploy.calibration.cost import FLOAT_WORLD, CostModel, layer_edges
from resnext_deploy.calibration.sensitivity import LayerSensitivity, SensitivityResult, SiteSensitivity, layer_costs

CHANNELS = 8


def _chain() -> onnx.ModelProto:
    """image -> conv0 -> relu -> conv1 -> relu -> conv2 -> relu -> conv3 -> GlobalAveragePool -> logits.

    conv1 sits between INT8 neighbours; conv3 feeds the float head; both have the same MACs.
    """
    rng = np.random.default_rng(0)
    nodes, inits, previous = [], [], "image"
    for index in range(4):
        channels_in = 3 if index == 0 else CHANNELS
        weight = numpy_helper.from_array(rng.standard_normal((CHANNELS, channels_in, 3, 3)).astype(np.float32),
                                         f"w{index}")
        inits.append(weight)
        nodes.append(helper.make_node("Conv", [previous, f"w{index}"], [f"c{index}"], name=f"conv{index}", pads=[1, 1, 1, 1]))
        previous = f"c{index}"
        if index < 3:
            nodes.append(helper.make_node("Relu", [previous], [f"r{index}"], name=f"relu{index}"))
            previous = f"r{index}"
    nodes.append(helper.make_node("GlobalAveragePool", [previous], ["logits"], name="pool"))
    graph = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 16, 16])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, CHANNELS, 1, 1])], inits)
    return onnx.shape_inference.infer_shapes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))


def _result(model: onnx.ModelProto, with_costs: bool) -> SensitivityResult:
    layers = [node.name for node in model.graph.node if node.op_type == "Conv"]
    costs = layer_costs(model)
    total = sum(costs.values())
    nsr = {"conv0": 1e-5, "conv1": 4e-4, "conv2": 1e-5, "conv3": 4e-4}  # conv1 and conv3 equally sensitive
    sites = [SiteSensitivity(i, "weight", f"w{i}", [name], None, nsr[name]) for i, name in enumerate(layers)]
    records = [LayerSensitivity(name, name, "Conv", i, costs[name] / total, nsr[name], None, None)
               for i, name in enumerate(layers)]
    extra = {"cost_model": CostModel(costs, layer_edges(model, layers)).to_dict()} if with_costs else {}
    return SensitivityResult("onnxruntime", "minmax", records, sites, 8, 8,
                             {"cosine": 0.999, "agreement": 1.0, "nsr": 2e-3}, 0.0, extra=extra)


def test_the_layer_next_to_the_float_head_goes_first_when_equally_sensitive() -> None:
    model = _chain()
    costs = CostModel(layer_costs(model), layer_edges(model, ["conv0", "conv1", "conv2", "conv3"]))
    assert costs.macs["conv1"] == costs.macs["conv3"]
    assert {(e.source, e.target) for e in costs.edges} == {
        (FLOAT_WORLD, "conv0"), ("conv0", "conv1"), ("conv1", "conv2"), ("conv2", "conv3"), ("conv3", FLOAT_WORLD)}
    # conv1 in float breaks the INT8 chain twice; conv3 trades its conversion to the head for one from conv2
    assert costs.predicted_latency(["conv3"]) < costs.predicted_latency(["conv1"])
    assert costs.cost(["conv1", "conv2"]) - costs.cost(["conv1"]) < costs.cost(["conv2"])  # a float neighbour is cheaper

    sensitivity_order = _result(model, with_costs=False).fallback_order()
    cost_aware = _result(model, with_costs=True).fallback_order()
    assert sensitivity_order[0] == "conv1"  # equal noise and MACs: network order decides
    assert cost_aware[0] == "conv3"  # the cheaper one on the engine
    assert set(cost_aware[:2]) == {"conv1", "conv3"}  # sensitivity still decides what is worth taking


def test_a_bf16_fallback_costs_less_than_fp32() -> None:
    model = _chain()
    layers = ["conv0", "conv1", "conv2", "conv3"]
    fp32 = CostModel(layer_costs(model), layer_edges(model, layers), "fp32")
    bf16 = CostModel(layer_costs(model), layer_edges(model, layers), "bf16")
    assert bf16.predicted_latency(["conv1"]) < fp32.predicted_latency(["conv1"])
    assert fp32.predicted_latency([]) == 1.0
