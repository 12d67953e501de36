"""Cut a graph where one tensor carries everything forward, and run only what lies after the cut.

The sensitivity analysis quantizes one site at a time: everything before that site is the FP32
network, the same for every site after it. Cutting the switchable graph where a single tensor is
live (between ResNeXt blocks) and feeding that tensor, computed once in FP32, to the part after
the cut makes each site cost only the rest of the network.

``onnx.utils.Extractor`` does the same extraction but does not follow the names an ``If``'s
branches read from the enclosing graph, which the switchable graph is made of; hence this module.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Cut:
    """A boundary in the graph's data nodes: every data node before ``position`` feeds the rest only through ``tensor``."""

    position: int  # index into ``data_nodes``: the first node after the cut
    tensor: str


def node_inputs(node: Any) -> list[str]:
    """Every name ``node`` reads: its inputs and what its subgraphs (an ``If``'s branches) read from outside."""
    names = [name for name in node.input if name]
    for attribute in node.attribute:
        for graph in [attribute.g] if attribute.HasField("g") else list(attribute.graphs):
            local = {init.name for init in graph.initializer} | {out for inner in graph.node for out in inner.output}
            local |= {value.name for value in graph.input}
            names += [name for inner in graph.node for name in node_inputs(inner) if name not in local]
    return names


def data_nodes(model: Any, source: str) -> list[Any]:
    """The nodes that depend on the graph input ``source`` (the image), in graph order (the graph is sorted)."""
    reached = {source}
    nodes = []
    for node in model.graph.node:
        if any(name in reached for name in node_inputs(node)):
            nodes.append(node)
            reached.update(node.output)
    return nodes


def single_tensor_cuts(model: Any, source: str) -> list[Cut]:
    """Every boundary between data nodes across which exactly one tensor is live (the first: ``source`` itself)."""
    nodes = data_nodes(model, source)
    birth = {source: -1}
    for index, node in enumerate(nodes):
        for name in node.output:
            birth[name] = index
    last: dict[str, int] = {}
    for index, node in enumerate(nodes):
        for name in node_inputs(node):
            if name in birth:
                last[name] = index
    live_from: dict[int, list[str]] = {}
    for name, born in birth.items():
        if name in last:
            for position in range(born + 1, last[name] + 1):
                live_from.setdefault(position, []).append(name)
    return [Cut(position, names[0]) for position, names in sorted(live_from.items()) if len(names) == 1]


def extract(model: Any, inputs: Iterable[str], outputs: Iterable[str]) -> Any:
    """The part of ``model`` computing ``outputs`` from ``inputs`` (new graph inputs, float, any shape) and the
    graph's other inputs and initializers; nodes keep their order."""
    from onnx import TensorProto, helper

    graph = model.graph
    inputs, outputs = list(inputs), list(outputs)
    producer = {out: node for node in graph.node for out in node.output}
    initializers = {init.name: init for init in graph.initializer}
    graph_inputs = {value.name: value for value in graph.input}
    stop = set(inputs) | set(initializers) | set(graph_inputs)
    needed: set[int] = set()
    used: set[str] = set()
    pending = list(outputs)
    while pending:
        name = pending.pop()
        if name in used:
            continue
        used.add(name)
        if name in stop:
            continue
        node = producer.get(name)
        if node is None:
            raise ValueError(f"{name!r} is neither computed nor fed in the graph")
        if id(node) not in needed:
            needed.add(id(node))
            pending.extend(node_inputs(node))
    declared = {value.name: value for value in [*graph.output, *graph.value_info]}
    new_inputs = [helper.make_tensor_value_info(name, TensorProto.FLOAT, None) for name in inputs]
    new_inputs += [value for name, value in graph_inputs.items() if name in used and name not in inputs]
    new_outputs = [declared.get(name) or helper.make_tensor_value_info(name, TensorProto.FLOAT, None) for name in outputs]
    part = helper.make_graph(
        [node for node in graph.node if id(node) in needed], f"{graph.name}_part", new_inputs, new_outputs,
        initializer=[init for name, init in initializers.items() if name in used],
        value_info=[value for value in graph.value_info if value.name in used and value.name not in inputs],
    )
    result = helper.make_model(part, opset_imports=list(model.opset_import), producer_name="resnext-deploy")
    result.ir_version = model.ir_version
    return result
