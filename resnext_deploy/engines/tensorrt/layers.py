"""What an engine really runs: per-layer precisions from TensorRT's engine inspector.

``IEngineInspector.get_engine_information(LayerInformationFormat.JSON)`` describes every fused
layer when the engine was built with ``ProfilingVerbosity.DETAILED`` (Polygraphy's default): its
name (the ONNX nodes it fused, joined by `` + ``), ``LayerType``, the inputs' and outputs'
``Format/Datatype`` (TensorRT 11 splits it into ``Format`` and ``Datatype``) and, for
convolutions, ``ParameterType: Convolution``, ``Groups`` and ``Weights: {Type}``. Parsing is
pure Python, so it is tested on CPU with the documented format.
"""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from pathlib import Path
from typing import Any

from resnext_deploy.engines.tensorrt.runtime import EngineDeserializer

_TYPES = (("FP8", "FP8"), ("INT8", "INT8"), ("INT4", "INT4"), ("FP16", "FP16"), ("HALF", "FP16"), ("BF16", "BF16"),
          ("FP32", "FP32"), ("FLOAT", "FP32"), ("INT32", "INT32"), ("INT64", "INT64"), ("BOOL", "BOOL"), ("UINT8", "UINT8"))


def data_type(tensor: dict[str, Any]) -> str:
    """``Thirty-two wide channel vectorized row major Int8 format.`` -> ``INT8`` (either TensorRT 10 or 11 keys)."""
    text = str(tensor.get("Format/Datatype") or " ".join(str(tensor.get(k, "")) for k in ("Datatype", "Format"))).upper()
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
    if isinstance(weights, dict) and weights.get("Type"):
        weight_type = data_type({"Datatype": weights["Type"]})
    return LayerInfo(
        name=str(record.get("Name", "?")),
        layer_type=str(record.get("LayerType", "?")),
        inputs=tuple(data_type(t) for t in record.get("Inputs") or []),
        outputs=tuple(data_type(t) for t in record.get("Outputs") or []),
        convolution=record.get("ParameterType") == "Convolution",
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
