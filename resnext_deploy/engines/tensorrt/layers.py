"""What an engine really runs: per-layer precisions from TensorRT's engine inspector.

``IEngineInspector.get_engine_information(LayerInformationFormat.JSON)`` describes every fused
layer when the engine was built with ``ProfilingVerbosity.DETAILED`` (Polygraphy's default): its
name (the ONNX nodes it fused, joined by `` + ``), ``LayerType``, the inputs' and outputs'
``Format/Datatype`` (TensorRT 11 splits it into ``Format`` and ``Datatype``, spelled ``DataType``
in some releases) and, for convolutions, ``ParameterType: Convolution``, ``Groups`` and
``Weights: {Type}``. A convolution fused with its activation and pooling is one
``ParameterType: ConvActPool`` record (``LayerType: CaskConvActPool``; TensorRT's engine explorer,
trex, counts it as a convolution too). Parsing is pure Python, so it is tested on CPU with
recorded inspector output.
"""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from pathlib import Path
from typing import Any

from resnext_deploy.engines.tensorrt.runtime import EngineDeserializer

MOST_INT8 = 0.5  # "the INT8 engine really runs INT8": more than this share of its dense convolutions

_TYPES = (("FP8", "FP8"), ("INT8", "INT8"), ("INT4", "INT4"), ("FP16", "FP16"), ("HALF", "FP16"), ("BF16", "BF16"),
          ("FP32", "FP32"), ("FLOAT", "FP32"), ("INT32", "INT32"), ("INT64", "INT64"), ("BOOL", "BOOL"), ("UINT8", "UINT8"))


CONVOLUTION_PARAMETER_TYPES = ("Convolution", "ConvActPool")
_TYPE_KEYS = ("Datatype", "DataType", "Format")


def data_type(tensor: dict[str, Any]) -> str:
    """``Thirty-two wide channel vectorized row major Int8 format.`` -> ``INT8`` (TensorRT 10 or 11 keys, either spelling)."""
    text = str(tensor.get("Format/Datatype") or " ".join(str(tensor.get(k, "")) for k in _TYPE_KEYS)).upper()
    words = text.replace(".", " ").replace(",", " ").split()
    for token, name in _TYPES:
        if token in words or f"K{token}" in words:
            return name
    return "?"


@dataclasses.dataclass(frozen=True)
class LayerInfo:
    """One engine layer: its name, kind, input/output types and, for convolutions, groups and weight type."""

    name: str
    layer_type: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    convolution: bool
    groups: int | None = None
    weights: str | None = None

    @property
    def precision(self) -> str:
        """The type a convolution computes in: its weights' type, else its first input's."""
        if self.weights:
            return self.weights
        return self.inputs[0] if self.inputs else "?"


def parse_layer(record: dict[str, Any] | str) -> LayerInfo:
    """One inspector record (a dict, or a bare name when the engine was not built DETAILED)."""
    if not isinstance(record, dict):
        return LayerInfo(str(record), "?", (), (), False)
    weights = record.get("Weights")
    weight_type = None
    if isinstance(weights, dict):
        declared = weights.get("Type") or weights.get("Datatype") or weights.get("DataType")
        weight_type = data_type({"Datatype": declared}) if declared else None
    return LayerInfo(
        name=str(record.get("Name", "?")),
        layer_type=str(record.get("LayerType", "?")),
        inputs=tuple(data_type(t) for t in record.get("Inputs") or []),
        outputs=tuple(data_type(t) for t in record.get("Outputs") or []),
        convolution=record.get("ParameterType") in CONVOLUTION_PARAMETER_TYPES,
        groups=int(record["Groups"]) if "Groups" in record else None,
        weights=weight_type,
    )


def parse_engine_information(info: str | dict[str, Any]) -> list[LayerInfo]:
    """Every layer of ``get_engine_information(JSON)``'s output (``{"Layers": [...], "Bindings": [...]}``)."""
    data = json.loads(info) if isinstance(info, str) else info
    return [parse_layer(record) for record in data.get("Layers", [])]


def summarize(layers: list[LayerInfo]) -> dict[str, Any]:
    """Convolution counts by precision, split into grouped and dense, and the convolutions that are not INT8."""
    convs = [layer for layer in layers if layer.convolution]
    grouped = [layer for layer in convs if (layer.groups or 1) > 1]
    dense = [layer for layer in convs if (layer.groups or 1) <= 1]
    return {
        "layers": len(layers),
        "detailed": any(layer.layer_type != "?" for layer in layers),
        "convolutions": dict(Counter(layer.precision for layer in convs)),
        "dense_convolutions": dict(Counter(layer.precision for layer in dense)),
        "grouped_convolutions": dict(Counter(layer.precision for layer in grouped)),
        "not_int8": [f"{layer.name} ({layer.precision})" for layer in convs if layer.precision != "INT8"],
        "layer_types": dict(Counter(layer.layer_type for layer in layers)),
    }


def inspect_engine(engine_path: Path, allow_host_code: bool = False) -> list[LayerInfo]:
    """Deserialize ``engine_path`` (on a GPU with TensorRT) and read every layer from its inspector."""
    import tensorrt as trt

    engine = EngineDeserializer(Path(engine_path).read_bytes(), allow_host_code, Path(engine_path).name)()
    inspector = engine.create_engine_inspector()
    return parse_engine_information(inspector.get_engine_information(trt.LayerInformationFormat.JSON))


def precision_problem(summary: dict[str, Any], expect: str) -> str | None:
    """Why an engine's convolutions are not in ``expect`` precision, or None.

    ``int8``: most dense convolutions (more than half) run INT8, not one of them; ``fp16``: every
    convolution runs FP16 (a strongly typed FP16 graph leaves none in FP32). Grouped convolutions
    may stay in float in an INT8 engine (the recipes keep them there on purpose).
    """
    if not summary.get("detailed"):
        return "the inspector gave names only (the engine was not built with ProfilingVerbosity.DETAILED)"
    convs = summary["convolutions"]
    if not convs:
        return "the inspector shows no convolution at all"
    if expect == "int8":
        dense = summary["dense_convolutions"]
        int8, total = dense.get("INT8", 0), sum(dense.values())
        if int8 <= MOST_INT8 * total:
            return (f"only {int8} of {total} dense convolutions run INT8 (expected most): the Q/DQ placement did not "
                    f"reach TensorRT's INT8 kernels")
        return None
    other = {name: count for name, count in convs.items() if name != "FP16"}
    if other:
        return f"convolutions outside FP16: {other} (a strongly typed FP16 engine runs every convolution in FP16)"
    return None
