"""FP16 conversion with float32 inputs/outputs, runnable on ONNX Runtime's CPU provider.

Two entry points share one converter (onnxconverter-common):

* :func:`convert_fp16` turns an FP32 ONNX file into the FP16 artifact (``model.fp16.onnx``);
* :func:`float_regions_to_fp16` turns the float regions of a Q/DQ INT8 model into FP16 (the
  layers left out of INT8, pooling, the head, and the Q/DQ scales themselves), as NVIDIA's
  ModelOpt does by default for TensorRT: a strongly typed network runs exactly the types in
  the graph, so FP32 float regions would run FP32 on the GPU.
"""

from __future__ import annotations

import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from resnext_deploy.errors import InputError, UsageError
from resnext_deploy.files import atomic_path
from resnext_deploy.metadata import get_metadata, set_metadata

# QuantizeLinear/DequantizeLinear take float16 data and scales from opset 19 on (float only before)
FP16_QDQ_OPSET = 19


@dataclass
class Fp16Result:
    """What ``convert_fp16`` produced, as recorded in report.json."""

    path: Path
    float16_initializers: int
    cast_nodes: int
    blocked_ops: list[str]
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "path": str(self.path)}


@dataclass
class FloatRegions:
    """What ``float_regions_to_fp16`` changed: the opset it needed, FP16 tensors, casts, and what stayed FP32."""

    opset_before: int
    opset_after: int
    float16_initializers: int
    cast_nodes: int
    blocked_ops: list[str] = field(default_factory=list)
    blocked_nodes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _convert(model: Any, op_block_list: list[str] | None, node_block_list: list[str] | None) -> Any:
    """onnxconverter-common's conversion with FP32 graph I/O; its notes on clamped values are silenced."""
    from onnxconverter_common import float16

    blocked = sorted(set(float16.DEFAULT_OP_BLOCK_LIST) | set(op_block_list or []))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="the float32 number", category=UserWarning)
        return float16.convert_float_to_float16(
            model, keep_io_types=True, op_block_list=blocked, node_block_list=list(node_block_list or [])
        )


def _default_opset(model: Any) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def _counts(model: Any) -> tuple[int, int]:
    import onnx

    halves = sum(init.data_type == onnx.TensorProto.FLOAT16 for init in model.graph.initializer)
    return halves, sum(node.op_type == "Cast" for node in model.graph.node)


def float_regions_to_fp16(
    model: Any, *, op_block_list: list[str] | None = None, node_block_list: list[str] | None = None
) -> tuple[Any, FloatRegions]:
    """Return a copy of Q/DQ ``model`` (an ``onnx.ModelProto``) whose float tensors are FP16, graph I/O FP32.

    INT8 tensors and zero points are untouched; scales become FP16, so every DequantizeLinear
    yields FP16 and every QuantizeLinear reads FP16 (hence the default-domain opset is raised to
    19 where it is lower). Ops in ``op_block_list`` and nodes in ``node_block_list`` stay FP32 behind
    casts. The result runs on ONNX Runtime's CPU provider, which casts around its FP32-only kernels.
    """
    from onnx import version_converter

    before = _default_opset(model)
    if before < FP16_QDQ_OPSET:
        model = version_converter.convert_version(model, FP16_QDQ_OPSET)
    converted = _convert(model, op_block_list, node_block_list)
    halves, casts = _counts(converted)
    return converted, FloatRegions(
        before, _default_opset(converted), halves, casts, sorted(set(op_block_list or [])), sorted(set(node_block_list or []))
    )


def convert_fp16(
    fp32_onnx: str | os.PathLike[str], output: str | os.PathLike[str], *, op_block_list: list[str] | None = None
) -> Fp16Result:
    """Convert every float tensor to FP16 (onnxconverter-common), keeping the graph's I/O float32."""
    import onnx

    started = time.perf_counter()
    fp32_onnx, output = Path(fp32_onnx), Path(output)
    if output.resolve() == fp32_onnx.resolve():
        raise UsageError(f"output {output} would overwrite the FP32 model", hint="write to model.fp16.onnx")
    if not fp32_onnx.is_file():
        raise InputError(f"FP32 ONNX model not found: {fp32_onnx}", hint="run `resnext-deploy export` first")
    try:
        model = onnx.load(os.fspath(fp32_onnx))
    except Exception as exc:  # onnx raises DecodeError and others for damaged files
        raise InputError(f"cannot read ONNX file {fp32_onnx}: {exc}", hint="re-export the FP32 model") from None
    metadata = get_metadata(model)
    converted = _convert(model, op_block_list, None)
    set_metadata(converted, {**metadata, "precision": "fp16"})
    with atomic_path(output) as tmp:
        onnx.save(converted, os.fspath(tmp))
    halves, casts = _counts(converted)
    return Fp16Result(output, halves, casts, sorted(set(op_block_list or [])), round(time.perf_counter() - started, 3))


_ELEMENT_NAMES = {1: "fp32", 10: "fp16", 16: "bf16"}  # onnx.TensorProto FLOAT, FLOAT16, BFLOAT16


def layer_float_types(model: str | os.PathLike[str] | Any, layers: list[str]) -> dict[str, str | None]:
    """The float type each named node computes in according to the graph: its weight initializer's element type
    (what ONNX Runtime runs and a strongly typed TensorRT network builds); None for a node that is not there or is
    still quantized (its weights come from a DequantizeLinear)."""
    import onnx

    graph = (onnx.load(os.fspath(model), load_external_data=False) if isinstance(model, (str, os.PathLike))
             else model).graph
    initializers = {init.name: init.data_type for init in graph.initializer}
    found: dict[str, str | None] = dict.fromkeys(layers)
    for node in graph.node:
        if node.name in found and len(node.input) > 1 and node.input[1] in initializers:
            found[node.name] = _ELEMENT_NAMES.get(initializers[node.input[1]])
    return found
