"""Reading an ONNX graph's inputs and outputs, and a plain ONNX Runtime session, one way for every room."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from resnext_deploy.errors import InputError

CPU_PROVIDERS = ("CPUExecutionProvider",)
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


def ort_session(
    model: bytes | str | os.PathLike[str],
    *,
    threads: int | None = None,
    options: Any = None,
    providers: Sequence[str] = CPU_PROVIDERS,
) -> Any:
    """An ONNX Runtime session, on the CPU unless ``providers`` say otherwise (the GPU wheel would try CUDA first).

    ``options`` default to ORT's own with warnings silenced; ``threads`` sets the intra-op pool.
    A file ORT cannot load is an InputError naming it.
    """
    import onnxruntime as ort

    if options is None:
        options = ort.SessionOptions()
        options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = threads
    if isinstance(model, bytes):  # a graph we just made: failing to load it is our bug, not the user's input
        return ort.InferenceSession(model, options, providers=list(providers))
    try:
        return ort.InferenceSession(os.fspath(model), options, providers=list(providers))
    except Exception as exc:  # ORT raises InvalidProtobuf, Fail, InvalidGraph... for damaged files
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"ONNX Runtime cannot load {model}: {first_line}",
                         hint="the file is truncated or not a valid ONNX model; re-export it") from None
