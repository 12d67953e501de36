"""A Q/DQ model whose quantization sites can be switched on and off at run time, for sensitivity analysis.

ONNX Runtime's ``qdq_loss_debug`` compares tensors of one fixed Q/DQ model with the float model;
it cannot say what the output would be with only some layers quantized without quantizing a
model per configuration. Here every Q/DQ pair of the full INT8 model becomes
``Where(mask[i], DequantizeLinear(QuantizeLinear(x)), x)`` and every weight DequantizeLinear
``Where(mask[j], DequantizeLinear(w_q), w_float)`` (or, faster, an ``If`` per site whose branches
hold constant weights), so one ONNX Runtime session evaluates any set of quantized layers by
feeding a boolean mask (fake quantization in float, as ORT runs an unfused Q/DQ graph).

A *layer* is a node the recipe quantizes and ``nodes_to_exclude`` can leave in float (Conv,
Gemm, Add, pooling with its own scale...). Each site records the layers that put it there, as
ONNX Runtime's QDQ quantizer does: the consumers that quantize their inputs, the producer when
the recipe quantizes that op's output, and the same-scale ops (MaxPool, Flatten...) that
quantize their output only when their input is quantized.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

MASK_INPUT = "qdq_site_mask"
SIM_SUFFIX = "_qdq_sim"
FLOAT_SUFFIX = "_float_sim"
# ops whose Q/DQ follows their input's (ORT's QDQDirect8BitOp and friends): never a layer of their own
SAME_SCALE_OPS = frozenset({
    "MaxPool", "AveragePool", "Flatten", "Reshape", "Transpose", "Squeeze", "Unsqueeze", "Slice", "Pad",
    "Split", "Gather", "GatherElements", "Resize", "TopK", "Relu", "Clip", "Identity",
})
QUANTIZE = "QuantizeLinear"
DEQUANTIZE = "DequantizeLinear"


@dataclass(frozen=True)
class Site:
    """One switchable quantization: an activation Q/DQ pair or the constant DQ inputs of one layer."""

    index: int
    kind: str  # "activation" | "weight"
    tensor: str  # the float tensor quantized (activation) or the layer's node name (weight)
    requesters: tuple[str, ...]  # layers whose quantization puts this site in the graph
    follows: int | None = None  # a same-scale op's output site: active whenever this input site is
    scale: float | None = None
    zero_point: int | None = None
    qmin: int | None = None
    qmax: int | None = None
    quantized_tensor: str = ""  # in the switchable graph: the DequantizeLinear output (before the switch)
    float_tensor: str = ""  # in the switchable graph: the float value the switch passes when off


@dataclass
class SwitchableModel:
    """The rewritten model, its sites and layers (graph order); ``mask(quantized)`` feeds it."""

    model: Any  # onnx.ModelProto
    sites: list[Site]
    layers: list[str]
    op_types: dict[str, str] = field(default_factory=dict)

    def mask(self, quantized: Iterable[str]) -> np.ndarray:
        """The site mask with exactly the layers in ``quantized`` in INT8 (the rest in float)."""
        chosen = set(quantized)
        active = np.zeros(len(self.sites), dtype=bool)
        for site in self.sites:  # sites are in graph order, so a followed site is decided first
            active[site.index] = any(name in chosen for name in site.requesters) or (
                site.follows is not None and bool(active[site.follows])
            )
        return active

    def site_mask(self, indices: Iterable[int]) -> np.ndarray:
        """The mask with exactly the sites ``indices`` on, plus the same-scale sites that follow them."""
        active = np.zeros(len(self.sites), dtype=bool)
        active[list(indices)] = True
        for site in self.sites:
            if site.follows is not None and active[site.follows]:
                active[site.index] = True
        return active

    def layer_sites(self, layer: str) -> list[Site]:
        """The sites ``layer`` requests itself."""
        return [site for site in self.sites if layer in site.requesters]

    def with_noise_outputs(self) -> tuple[Any, list[tuple[int, str, str]]]:
        """A copy whose extra outputs are, per activation site, sum(float^2) and sum((dq - float)^2) over the batch.

        Run with every site off, the float tensor is the FP32 activation and dq its fake-quantized
        copy: the noise that site injects when quantized alone (ORT's ``qdq_err`` of activation
        matching, computed in the graph so no activation leaves the session).
        """
        import onnx
        from onnx import TensorProto, helper

        model = onnx.ModelProto()
        model.CopyFrom(self.model)
        outputs: list[tuple[int, str, str]] = []
        for site in self.sites:
            if site.kind != "activation" or not site.quantized_tensor:
                continue
            signal, noise = f"site{site.index}_signal", f"site{site.index}_noise"
            model.graph.node.extend([
                helper.make_node("ReduceSumSquare", [site.float_tensor], [signal], keepdims=0, name=signal),
                helper.make_node("Sub", [site.quantized_tensor, site.float_tensor], [f"{noise}_diff"], name=f"{noise}_diff"),
                helper.make_node("ReduceSumSquare", [f"{noise}_diff"], [noise], keepdims=0, name=noise),
            ])
            model.graph.output.extend([helper.make_tensor_value_info(signal, TensorProto.FLOAT, []),
                                       helper.make_tensor_value_info(noise, TensorProto.FLOAT, [])])
            outputs.append((site.index, signal, noise))
        return model, outputs


def build_switchable(
    qdq_model: Any, float_model: Any, no_output_quant: Iterable[str] = (), excluded: Iterable[str] = (),
    weights: str = "switch",
) -> SwitchableModel:
    """Rewrite the full INT8 Q/DQ model ``qdq_model`` (an ``onnx.ModelProto``, left unchanged).

    ``float_model`` is the pre-processed FP32 graph the quantizer read (float weights by name);
    ``no_output_quant`` the op types whose outputs the recipe leaves unquantized; ``excluded`` the
    nodes the recipe itself keeps in float (never layers here). ``weights``: "switch" (each layer's
    weights follow its weight site through a ``Where``), or constant "float" weights for every layer
    (the weight sites are then listed but not switchable), or "branch": every site
    an ``If`` whose two branches hold constant weights (ORT pre-packs them) and whose untaken
    branch costs nothing, so a mask with a few sites on runs at about FP32 speed.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.ModelProto()
    model.CopyFrom(qdq_model)
    graph = model.graph
    nodes = list(graph.node)
    initializers = {init.name: init for init in graph.initializer}
    float_weights = {init.name: init for init in float_model.graph.initializer}
    producer = {out: node for node in nodes for out in node.output}
    consumers: dict[str, list[Any]] = defaultdict(list)
    for node in nodes:
        for name in node.input:
            consumers[name].append(node)
    recipe_excluded = set(excluded)
    no_output_quant = frozenset(no_output_quant)

    def is_constant_dq(node: Any) -> bool:
        return node.op_type == DEQUANTIZE and node.input[0] in initializers

    def is_activation_dq(node: Any) -> bool:
        source = producer.get(node.input[0])
        return node.op_type == DEQUANTIZE and source is not None and source.op_type == QUANTIZE

    layers = [
        node.name for node in nodes
        if node.op_type not in (QUANTIZE, DEQUANTIZE) and node.op_type not in SAME_SCALE_OPS
        and node.name not in recipe_excluded
        and any((p := producer.get(name)) is not None and (is_constant_dq(p) or is_activation_dq(p)) for name in node.input)
    ]
    layer_set = set(layers)
    op_types = {node.name: node.op_type for node in nodes if node.name in layer_set}

    sites: list[Site] = []
    site_of_tensor: dict[str, int] = {}
    rewires: list[tuple[Any, int, str]] = []  # (DQ node, site index, float source tensor)
    for node in nodes:  # graph order: a same-scale op's input site precedes its output site
        if node.op_type != QUANTIZE:
            continue
        source = node.input[0]
        dqs = [c for c in consumers[node.output[0]] if c.op_type == DEQUANTIZE]
        users = [c for dq in dqs for out in dq.output for c in consumers[out]]
        requesters = [u.name for u in users if u.name in layer_set]
        origin = producer.get(source)
        follows = None
        if origin is not None and origin.name in layer_set and origin.op_type not in no_output_quant:
            requesters.append(origin.name)
        elif origin is not None and origin.op_type in SAME_SCALE_OPS:
            upstream = next((producer.get(i) for i in origin.input if producer.get(i) is not None), None)
            if upstream is not None and upstream.op_type == DEQUANTIZE:
                q_before = producer.get(upstream.input[0])
                if q_before is not None:
                    follows = site_of_tensor.get(q_before.input[0])
        scale, zero_point, qmin, qmax = _qparams(node, initializers)
        index = len(sites)
        sites.append(Site(index, "activation", source, tuple(dict.fromkeys(requesters)), follows,
                          scale, zero_point, qmin, qmax))
        site_of_tensor[source] = index
        rewires.extend((dq, index, source) for dq in dqs)

    weight_rewires: list[tuple[Any, int, str]] = []  # (DQ node, site index, float initializer name)
    fixed: set[int] = set()  # nodes replaced (weight DQs made constants, or Q/DQ moved into branches)
    branched_layers: list[tuple[Any, int, list[tuple[Any, str]]]] = []
    for node in nodes:
        if node.name not in layer_set:
            continue
        constant_dqs = [producer[name] for name in node.input if name in producer and is_constant_dq(producer[name])]
        usable = [(dq, _float_name(dq.input[0])) for dq in constant_dqs]
        usable = [(dq, name) for dq, name in usable if name in float_weights]
        if not usable:
            continue
        index = len(sites)
        sites.append(Site(index, "weight", node.name, (node.name,)))
        if weights == "switch":
            weight_rewires.extend((dq, index, name) for dq, name in usable)
            continue
        if weights == "branch":
            branched_layers.append((node, index, usable))
            continue
        for dq, name in usable:  # a constant, so ORT pre-packs it as in the FP32 model
            value = numpy_helper.to_array(float_weights[name])
            constant = f"{name}_{weights}{FLOAT_SUFFIX}"
            graph.initializer.append(numpy_helper.from_array(value, constant))
            node.input[list(node.input).index(dq.output[0])] = constant
            fixed.add(id(dq))

    graph.input.append(helper.make_tensor_value_info(MASK_INPUT, TensorProto.BOOL, [len(sites)]))
    new_nodes: list[Any] = []
    if weights == "branch":
        new_nodes += _branch_activations(model, float_model, rewires, producer, sites, fixed)
        new_nodes += _branch_layers(graph, branched_layers, initializers, float_weights, fixed)
        rewires = []
    added_floats: set[str] = set()
    folded = _folded_activations(model, float_model, {source for _, _, source in rewires}, producer, new_nodes)
    for dq, index, source in rewires + weight_rewires:
        source = folded.get(source, source)
        if dq.op_type == DEQUANTIZE and dq.input[0] in initializers:
            float_name = source + FLOAT_SUFFIX
            if float_name not in added_floats:
                graph.initializer.append(numpy_helper.from_array(numpy_helper.to_array(float_weights[source]), float_name))
                added_floats.add(float_name)
            source = float_name
        flag = f"{MASK_INPUT}_{index}"
        if flag not in added_floats:
            graph.initializer.append(numpy_helper.from_array(np.array(index, dtype=np.int64), flag + "_index"))
            new_nodes.append(helper.make_node("Gather", [MASK_INPUT, flag + "_index"], [flag], name=flag))
            added_floats.add(flag)
        original = dq.output[0]
        dq.output[0] = original + SIM_SUFFIX
        new_nodes.append(helper.make_node("Where", [flag, dq.output[0], source], [original], name=original + "_switch"))
        if sites[index].kind == "activation" and not sites[index].quantized_tensor:
            sites[index] = dataclasses.replace(sites[index], quantized_tensor=dq.output[0], float_tensor=source)
    graph.node.extend(new_nodes)
    kept = [node for node in graph.node if id(node) not in fixed]
    del graph.node[:]
    graph.node.extend(kept)
    _toposort(graph)
    return SwitchableModel(model, sites, layers, op_types)


def freeze_sites(model: Any, live: Iterable[int]) -> Any:
    """``model`` (a branched switchable graph, or a part of one), changed in place: every site not in ``live`` fixed
    off, its ``If`` replaced by the float branch's nodes, so ONNX Runtime optimizes those regions as it does the FP32
    graph (fused activations, its blocked layouts) instead of stopping at each ``If``. Returns ``model``."""
    import onnx

    keep = {f"{MASK_INPUT}_{index}" for index in live}
    graph = model.graph
    nodes: list[Any] = []
    for node in graph.node:
        if node.op_type != "If" or not node.input[0].startswith(f"{MASK_INPUT}_") or node.input[0] in keep:
            nodes.append(node)
            continue
        branch = next(attribute.g for attribute in node.attribute if attribute.name == "else_branch")
        result = branch.output[0].name
        for inner in branch.node:
            copy = onnx.NodeProto()
            copy.CopyFrom(inner)
            copy.output[:] = [node.output[0] if name == result else name for name in copy.output]
            nodes.append(copy)
        graph.initializer.extend(branch.initializer)
    read = {name for node in nodes for name in _outer_inputs(node) + list(node.input)}
    nodes = [node for node in nodes if not (node.op_type == "Gather" and node.output[0] not in read
                                            and node.output[0].startswith(f"{MASK_INPUT}_"))]
    del graph.node[:]
    graph.node.extend(nodes)
    if not any(MASK_INPUT in node.input for node in nodes):  # every site fixed: the part no longer takes a mask
        inputs = [value for value in graph.input if value.name != MASK_INPUT]
        del graph.input[:]
        graph.input.extend(inputs)
    return model


def _flag(index: int, graph: Any, new_nodes: list[Any]) -> str:
    """The scalar bool ``mask[index]`` (one Gather per site)."""
    from onnx import helper, numpy_helper

    flag = f"{MASK_INPUT}_{index}"
    graph.initializer.append(numpy_helper.from_array(np.array(index, dtype=np.int64), flag + "_index"))
    new_nodes.append(helper.make_node("Gather", [MASK_INPUT, flag + "_index"], [flag], name=flag))
    return flag


def _branch(name: str, nodes: list[Any], output: str, initializers: list[Any] | None = None) -> Any:
    """A subgraph of ``nodes`` whose one output is ``output`` (float, any shape)."""
    from onnx import TensorProto, helper

    return helper.make_graph(nodes, name, [], [helper.make_tensor_value_info(output, TensorProto.FLOAT, None)],
                             initializer=initializers or [])


def _branch_activations(
    model: Any, float_model: Any, rewires: list[tuple[Any, int, str]], producer: dict[str, Any], sites: list[Site],
    fixed: set[int],
) -> list[Any]:
    """Each activation site's Q/DQ as ``If(mask[i], DQ(Q(x)), x)``; a folded Relu is re-applied in the float branch."""
    import onnx
    from onnx import helper

    float_producer = {out: node for node in float_model.graph.node for out in node.output}
    new_nodes: list[Any] = []
    flags: dict[int, str] = {}
    for dq, index, source in rewires:
        quantize = producer[dq.input[0]]
        flag = flags.get(index) or flags.setdefault(index, _flag(index, model.graph, new_nodes))
        original = dq.output[0]
        q_copy, dq_copy = onnx.NodeProto(), onnx.NodeProto()
        q_copy.CopyFrom(quantize)
        dq_copy.CopyFrom(dq)
        q_copy.output[0] = dq_copy.input[0] = f"{original}_q_then"
        dq_copy.output[0] = f"{original}_then"
        q_copy.name, dq_copy.name = f"{quantize.name}_then_{index}", f"{dq.name}_then"
        folded = float_producer.get(source)
        current = producer.get(source)
        if folded is not None and folded.op_type in ("Relu", "Clip") and (current is None or current.op_type != folded.op_type):
            activation = onnx.NodeProto()
            activation.CopyFrom(folded)
            activation.name, activation.input[0], activation.output[0] = f"{original}_else", source, f"{original}_else"
            otherwise = activation
        else:
            otherwise = helper.make_node("Identity", [source], [f"{original}_else"], name=f"{original}_else")
        new_nodes.append(helper.make_node(
            "If", [flag], [original], name=f"{original}_switch",
            then_branch=_branch(f"{original}_then", [q_copy, dq_copy], dq_copy.output[0]),
            else_branch=_branch(f"{original}_else", [otherwise], otherwise.output[0]),
        ))
        fixed.update((id(dq), id(quantize)))
        if not sites[index].quantized_tensor:
            sites[index] = dataclasses.replace(sites[index], quantized_tensor=original, float_tensor=source)
    return new_nodes


def _branch_layers(
    graph: Any, layers: list[tuple[Any, int, list[tuple[Any, str]]]], initializers: dict[str, Any],
    float_weights: dict[str, Any], fixed: set[int],
) -> list[Any]:
    """Each weighted layer as ``If(mask[j], layer(INT8 weights dequantized), layer(float weights))``, constants inside."""
    import onnx
    from onnx import helper, numpy_helper

    new_nodes: list[Any] = []
    for node, index, usable in layers:
        flag = _flag(index, graph, new_nodes)
        branches = []
        for side in ("then", "else"):
            copy = onnx.NodeProto()
            copy.CopyFrom(node)
            copy.name, copy.output[0] = f"{node.name}_{side}", f"{node.output[0]}_{side}"
            constants = []
            for dq, name in usable:
                value = numpy_helper.to_array(float_weights[name])
                if side == "then":
                    value = _dequantize(dq, initializers).astype(value.dtype)
                constants.append(numpy_helper.from_array(value, f"{name}_{side}{FLOAT_SUFFIX}"))
                copy.input[list(copy.input).index(dq.output[0])] = constants[-1].name
                fixed.add(id(dq))
            branches.append(_branch(f"{node.name}_{side}", [copy], copy.output[0], constants))
        new_nodes.append(helper.make_node("If", [flag], [node.output[0]], name=f"{node.name}_switch",
                                          then_branch=branches[0], else_branch=branches[1]))
        fixed.add(id(node))
    return new_nodes


def _folded_activations(
    model: Any, float_model: Any, sources: set[str], producer: dict[str, Any], new_nodes: list[Any]
) -> dict[str, str]:
    """Float stand-ins for tensors whose Relu/Clip the quantizer folded into the QuantizeLinear.

    ORT's QDQ quantizer drops a Relu after a quantized op and lets the Q's range clamp instead, so
    the tensor named after the Relu's output is the op's raw output in the Q/DQ graph; in float the
    activation must be applied again.
    """
    import onnx

    float_producer = {out: node for node in float_model.graph.node for out in node.output}
    float_inits = {init.name: init for init in float_model.graph.initializer}
    have = {init.name for init in model.graph.initializer}
    stand_ins: dict[str, str] = {}
    for source in sorted(sources):
        original = float_producer.get(source)
        current = producer.get(source)
        if original is None or original.op_type not in ("Relu", "Clip"):
            continue
        if current is not None and current.op_type == original.op_type:
            continue
        activation = onnx.NodeProto()
        activation.CopyFrom(original)
        activation.name = source + "_refold"
        activation.input[0] = source
        activation.output[0] = source + "_refold"
        for extra in list(activation.input)[1:]:
            if extra and extra not in have and extra in float_inits:
                model.graph.initializer.append(float_inits[extra])
                have.add(extra)
        new_nodes.append(activation)
        stand_ins[source] = activation.output[0]
    return stand_ins


def _dequantize(dq: Any, initializers: dict[str, Any]) -> np.ndarray:
    """The float value of a DequantizeLinear of constants (per-tensor or per-channel along ``axis``)."""
    from onnx import numpy_helper

    values = numpy_helper.to_array(initializers[dq.input[0]]).astype(np.float64)
    scale = numpy_helper.to_array(initializers[dq.input[1]]).astype(np.float64)
    zero = (numpy_helper.to_array(initializers[dq.input[2]]).astype(np.float64) if len(dq.input) > 2 and dq.input[2]
            else np.zeros_like(scale))
    if scale.size > 1:
        axis = next((attr.i for attr in dq.attribute if attr.name == "axis"), 1)
        shape = [1] * values.ndim
        shape[axis] = scale.size
        scale, zero = scale.reshape(shape), zero.reshape(shape)
    return (values - zero) * scale


def _float_name(quantized_name: str) -> str:
    """ORT names a quantized initializer ``<name>_quantized``."""
    return quantized_name[: -len("_quantized")] if quantized_name.endswith("_quantized") else quantized_name


def _qparams(q_node: Any, initializers: dict[str, Any]) -> tuple[float | None, int | None, int | None, int | None]:
    """Per-tensor scale, zero point and integer range of a QuantizeLinear, when its parameters are constants."""
    from onnx import numpy_helper

    if len(q_node.input) < 2 or q_node.input[1] not in initializers:
        return None, None, None, None
    scale = numpy_helper.to_array(initializers[q_node.input[1]])
    zero = numpy_helper.to_array(initializers[q_node.input[2]]) if len(q_node.input) > 2 and q_node.input[2] in initializers else np.zeros((), np.uint8)
    if scale.size != 1:
        return None, None, None, None
    info = np.iinfo(zero.dtype)
    return float(scale.reshape(())), int(zero.reshape(())), int(info.min), int(info.max)


def _outer_inputs(node: Any) -> list[str]:
    """Names an ``If`` node's branches read from the enclosing graph."""
    names: list[str] = []
    for attribute in node.attribute:
        if attribute.g.node:
            local = {init.name for init in attribute.g.initializer} | {o for n in attribute.g.node for o in n.output}
            names += [name for n in attribute.g.node for name in n.input if name and name not in local]
    return names


def _toposort(graph: Any) -> None:
    """Re-order nodes so every input is produced before use (Kahn's algorithm, stable in graph order)."""
    import heapq

    nodes = list(graph.node)
    producer = {out: i for i, node in enumerate(nodes) for out in node.output}
    waiting = [0] * len(nodes)
    users: dict[int, list[int]] = defaultdict(list)
    for i, node in enumerate(nodes):
        sources = {producer[name] for name in [*node.input, *_outer_inputs(node)] if name in producer}
        waiting[i] = len(sources)
        for source in sources:
            users[source].append(i)
    ready = [i for i, count in enumerate(waiting) if count == 0]
    heapq.heapify(ready)
    ordered: list[Any] = []
    while ready:
        i = heapq.heappop(ready)
        ordered.append(nodes[i])
        for user in users[i]:
            waiting[user] -= 1
            if waiting[user] == 0:
                heapq.heappush(ready, user)
    if len(ordered) != len(nodes):
        raise ValueError("the switchable graph has a cycle")
    del graph.node[:]
    graph.node.extend(ordered)
