"""Q/DQ placement fix-ups that ONNX Runtime's quantizer cannot express through its options.

TensorRT fuses a convolution with the residual Add that follows it only when the convolution's
output reaches the Add in high precision and the *other* (shortcut) input is quantized; an extra
Q/DQ pair between the convolution and the Add "forces the separation of the convolution from the
elementwise addition" (TensorRT developer guide, Q/DQ placement recommendations; NVIDIA's
quantization toolkits special-case ResNet residuals the same way). ORT's QDQ quantizer quantizes
both Add inputs, so the TensorRT recipe releases the convolution side afterwards.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any


def release_conv_side_of_residual_adds(model: Any) -> list[str]:
    """Remove the Q/DQ pair between a Conv and each Add it feeds, keeping the other Add input quantized.

    When both Add inputs come from convolutions (a downsampling block) the first input, the residual
    branch in timm's export order, is released and the shortcut stays quantized. Returns the names
    of the Add nodes changed.
    """
    nodes = list(model.graph.node)
    producer = {output: node for node in nodes for output in node.output}
    consumers: dict[str, list[Any]] = defaultdict(list)
    for node in nodes:
        for name in node.input:
            consumers[name].append(node)

    changed: list[str] = []
    dropped: set[int] = set()
    for add in (node for node in nodes if node.op_type == "Add" and len(node.input) == 2):
        sides = [_conv_qdq_side(name, producer, consumers) for name in add.input]
        quantized = [_is_dequantized(name, producer) for name in add.input]
        for index, side in enumerate(sides):
            if side is None or not quantized[1 - index]:
                continue
            conv, quantize, dequantize = side
            add.input[index] = conv.output[0]
            dropped.update((id(quantize), id(dequantize)))
            changed.append(add.name)
            break
    kept = [node for node in nodes if id(node) not in dropped]
    del model.graph.node[:]
    model.graph.node.extend(kept)
    _drop_unused_initializers(model)
    return changed


def _drop_unused_initializers(model: Any) -> None:
    """The removed pairs leave their scales and zero points behind; ORT would warn about each."""
    used = {name for node in model.graph.node for name in node.input} | {o.name for o in model.graph.output}
    kept = [init for init in model.graph.initializer if init.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(kept)


def _is_dequantized(name: str, producer: dict[str, Any]) -> bool:
    node = producer.get(name)
    return node is not None and node.op_type == "DequantizeLinear"


def _conv_qdq_side(name: str, producer: dict[str, Any], consumers: dict[str, list[Any]]) -> tuple[Any, Any, Any] | None:
    """(conv, Q, DQ) when ``name`` is Conv -> Q -> DQ used by this Add alone, else None."""
    dequantize = producer.get(name)
    if dequantize is None or dequantize.op_type != "DequantizeLinear" or len(consumers[name]) != 1:
        return None
    quantize = producer.get(dequantize.input[0])
    if quantize is None or quantize.op_type != "QuantizeLinear" or len(consumers[quantize.output[0]]) != 1:
        return None
    conv = producer.get(quantize.input[0])
    if conv is None or conv.op_type != "Conv" or len(consumers[conv.output[0]]) != 1:
        return None
    return conv, quantize, dequantize


def strongly_typed_placement_problems(model: Any) -> list[str]:
    """Where a Q/DQ graph departs from what TensorRT fuses; empty when every INT8 layer can run fused.

    Checked: every Q/DQ is symmetric signed INT8 (zero point 0, as TensorRT requires); a Conv/Gemm
    with INT8 weights also takes an INT8 input (else it cannot run in INT8); and no Q/DQ pair sits
    between a convolution and the residual Add it alone feeds while the other Add input is
    quantized (that pair keeps TensorRT from fusing Conv+Add). Float layers reading a dequantized
    tensor are fine: TensorRT dequantizes and runs them in the graph's float type.
    """
    from onnx import TensorProto, numpy_helper

    problems: list[str] = []
    initializers = {init.name: init for init in model.graph.initializer}
    producer = {out: node for node in model.graph.node for out in node.output}
    consumers: dict[str, list[Any]] = defaultdict(list)
    for node in model.graph.node:
        for name in node.input:
            consumers[name].append(node)
    for node in model.graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear") and len(node.input) > 2 and node.input[2] in initializers:
            zero = initializers[node.input[2]]
            if zero.data_type != TensorProto.INT8 or numpy_helper.to_array(zero).any():
                problems.append(f"{node.name}: zero point must be INT8 0 for TensorRT")
        if node.op_type in ("Conv", "Gemm") and len(node.input) > 1:
            weight, data = producer.get(node.input[1]), producer.get(node.input[0])
            weight_int8 = weight is not None and weight.op_type == "DequantizeLinear"
            input_int8 = data is not None and data.op_type == "DequantizeLinear"
            if weight_int8 and not input_int8:
                problems.append(f"{node.name}: INT8 weights but a float input (cannot run in INT8)")
        if node.op_type == "Add" and len(node.input) == 2:
            sides = [_conv_qdq_side(name, producer, consumers) for name in node.input]
            quantized = [_is_dequantized(name, producer) for name in node.input]
            for index, side in enumerate(sides):
                if side is not None and quantized[1 - index]:
                    problems.append(f"{node.name}: Q/DQ between {side[0].name} and the residual Add blocks Conv+Add fusion")
    return problems
