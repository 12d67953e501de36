"""What leaving layers out of INT8 costs on the engine, modelled from the graph (then checked by timing).

Two terms, in INT8 multiply-accumulates (so a cost divided by the model's MACs is a predicted
latency growth over full INT8):

* **Float MACs.** A layer kept in float computes its MACs ``FLOAT_MAC_COST[type] - 1`` times
  slower than in INT8 (VNNI/AMX int8 does 4 fp32 or 2 bf16/fp16 MACs' work per instruction).
* **Broken INT8 chains.** Every edge between two layers (or between a layer and the float world:
  the image, the pooling head) whose ends differ in precision carries a conversion of its tensor
  (a DequantizeLinear/QuantizeLinear pair the engine cannot fuse away, and layout reorders),
  ``CONVERSION_COST`` INT8 MACs per element. A float layer between INT8 neighbours adds two; one
  next to the float world removes one; two float neighbours share theirs.

The constants are a model, not a measurement: the search times what it picks on the export's
engine and report.json keeps both (``predicted_latency_x_int8`` and the measured ratios).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

FLOAT_MAC_COST = {"fp32": 4.0, "bf16": 2.0, "fp16": 2.0}  # float MAC in INT8 MACs, per fallback precision
CONVERSION_COST = 16.0  # INT8 MACs per converted element: a memory-bound pass over the tensor, both directions
FLOAT_WORLD = ""  # the graph's float inputs and outputs (the image, the head after the last quantized layer)
PASS_THROUGH = frozenset({"Relu", "Clip", "MaxPool", "AveragePool", "Flatten", "Reshape", "Identity", "Pad",
                          "Transpose", "Squeeze", "Unsqueeze", "DequantizeLinear", "QuantizeLinear", "Cast"})


@dataclass(frozen=True)
class Edge:
    """A tensor from one quantizable layer (or the float world) to another, with its element count at batch 1."""

    source: str
    target: str
    elements: int


@dataclass
class CostModel:
    """Per-layer MACs and the layer graph's edges; ``cost(float_layers)`` in INT8 MACs over full INT8."""

    macs: dict[str, int]
    edges: list[Edge]
    precision: str = "fp32"
    total_macs: int = field(init=False)

    def __post_init__(self) -> None:
        self.total_macs = max(sum(self.macs.values()), 1)

    def cost(self, float_layers: Iterable[str]) -> float:
        """Extra INT8-MAC time of ``float_layers`` in float: slower MACs plus the conversions at every boundary."""
        floating = set(float_layers) | {FLOAT_WORLD}
        extra = (FLOAT_MAC_COST.get(self.precision, FLOAT_MAC_COST["fp32"]) - 1.0) * sum(
            self.macs.get(name, 0) for name in floating)
        return extra + CONVERSION_COST * (self._boundary(floating) - self._boundary({FLOAT_WORLD}))

    def predicted_latency(self, float_layers: Iterable[str]) -> float:
        """Predicted latency relative to full INT8 (1.0 = full INT8), from ``cost``."""
        return 1.0 + self.cost(float_layers) / self.total_macs

    def _boundary(self, floating: set[str]) -> int:
        return sum(edge.elements for edge in self.edges if (edge.source in floating) != (edge.target in floating))

    def to_dict(self) -> dict[str, Any]:
        return {"macs": self.macs, "edges": [[e.source, e.target, e.elements] for e in self.edges]}

    @classmethod
    def from_dict(cls, data: dict[str, Any], precision: str = "fp32") -> CostModel:
        return cls(dict(data["macs"]), [Edge(str(s), str(t), int(n)) for s, t, n in data["edges"]], precision)


def layer_edges(model: Any, layers: Iterable[str]) -> list[Edge]:
    """Edges between ``layers`` (ONNX node names) of a float graph: from each layer's data inputs back through
    pass-through ops (``PASS_THROUGH``) to the nearest layer, else to the float world (the graph input, a float op);
    from each layer to the float world when its output reaches a float op or a graph output. Elements are those
    of the tensor at the consuming end (batch 1)."""
    names = set(layers)
    graph = model.graph
    producer = {out: node for node in graph.node for out in node.output}
    consumers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    initializers = {init.name for init in graph.initializer}
    outputs = {o.name for o in graph.output}
    shapes = {v.name: [d.dim_value or 1 for d in v.type.tensor_type.shape.dim]
              for v in [*graph.value_info, *graph.input, *graph.output]}

    def elements(tensor: str) -> int:
        count = 1
        for dim in shapes.get(tensor, [])[1:]:
            count *= dim
        return count

    def sources(tensor: str, seen: set[str]) -> set[str]:
        node = producer.get(tensor)
        if node is None:
            return {FLOAT_WORLD}
        if node.name in names:
            return {node.name}
        if node.op_type not in PASS_THROUGH:  # a float op (a grouped conv the recipe keeps float, the head)
            return {FLOAT_WORLD}
        if node.name in seen:
            return set()
        seen.add(node.name)
        found: set[str] = set()
        for name in node.input:
            if name and name not in initializers:
                found |= sources(name, seen)
        return found or {FLOAT_WORLD}

    def feeds_float(tensor: str, seen: set[str]) -> bool:
        if tensor in outputs:
            return True
        for node in consumers.get(tensor, []):
            if node.name in names or node.name in seen:
                continue
            seen.add(node.name)
            if node.op_type not in PASS_THROUGH or any(feeds_float(out, seen) for out in node.output):
                return True
        return False

    edges: list[Edge] = []
    for node in graph.node:
        if node.name not in names:
            continue
        data_inputs = [name for name in node.input if name and name not in initializers]
        for tensor in data_inputs[:2] if node.op_type in ("Add", "Mul", "Concat") else data_inputs[:1]:
            edges += [Edge(source, node.name, elements(tensor)) for source in sorted(sources(tensor, set()))]
        if feeds_float(node.output[0], set()):
            edges.append(Edge(node.name, FLOAT_WORLD, elements(node.output[0])))
    return edges
