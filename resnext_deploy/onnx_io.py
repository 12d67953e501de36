"""Reading an ONNX graph and its inputs and outputs, one way for every room (onnx only, imported lazily)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from resnext_deploy.errors import InputError

_REEXPORT_HINT = "the file is truncated or not ONNX; re-export it"


@dataclass(frozen=True)
class TensorInfo:
    """A graph input or output: name, dimensions and numpy dtype name."""

    name: str
    dims: tuple[int | str | None, ...]  # a size, a named dynamic dimension (dim_param), or None when unknown
    dtype: str

    @property
    def shape(self) -> tuple[int, ...]:
        """Sizes with -1 for every dynamic or unknown dimension (TensorRT's and Polygraphy's convention)."""
        return tuple(d if isinstance(d, int) and d > 0 else -1 for d in self.dims)


def load_model(path: str | os.PathLike[str]) -> Any:
    """An ``onnx.ModelProto`` without its external weight data; InputError for a missing or damaged file."""
    import onnx

    try:
        return onnx.load(os.fspath(path), load_external_data=False)
    except FileNotFoundError:
        raise InputError(f"ONNX file not found: {path}", hint="run `resnext-deploy export` first") from None
    except Exception as exc:  # onnx raises DecodeError and others for damaged files
        raise InputError(f"cannot read ONNX file {path}: {exc}", hint=_REEXPORT_HINT) from None


def graph_inputs(model: Any) -> tuple[TensorInfo, ...]:
    """The inputs a caller feeds: graph inputs that are not initializers (old exporters list weights too)."""
    initializers = {init.name for init in model.graph.initializer}
    return tuple(_tensor_info(v) for v in model.graph.input if v.name not in initializers)


def graph_outputs(model: Any) -> tuple[TensorInfo, ...]:
    return tuple(_tensor_info(v) for v in model.graph.output)


def read_graph_io(path: str | os.PathLike[str]) -> tuple[tuple[TensorInfo, ...], tuple[TensorInfo, ...]]:
    """(inputs, outputs) of an ONNX file; InputError when it cannot be read or has neither."""
    model = load_model(path)
    inputs, outputs = graph_inputs(model), graph_outputs(model)
    if not inputs or not outputs:
        raise InputError(f"ONNX file {path} has no graph inputs or outputs", hint="re-export it")
    return inputs, outputs


def _tensor_info(value: Any) -> TensorInfo:
    tensor = value.type.tensor_type
    dims = tuple(
        d.dim_param if d.dim_param else (d.dim_value if d.HasField("dim_value") else None) for d in tensor.shape.dim
    )
    return TensorInfo(value.name, dims, _dtype_name(tensor.elem_type))


def _dtype_name(elem_type: int) -> str:
    from onnx import TensorProto, helper

    try:
        return helper.tensor_dtype_to_np_dtype(elem_type).name
    except KeyError:  # UNDEFINED and types without a numpy equivalent
        return TensorProto.DataType.Name(elem_type).lower()


def graph_precision(model: Any) -> str:
    """What the graph computes in: ``int8`` with Q/DQ nodes, ``fp16`` with FP16 weights, else ``fp32``."""
    from onnx import TensorProto

    if any(node.op_type in ("QuantizeLinear", "DequantizeLinear") for node in model.graph.node):
        return "int8"
    if any(init.data_type == TensorProto.FLOAT16 for init in model.graph.initializer):
        return "fp16"
    return "fp32"
