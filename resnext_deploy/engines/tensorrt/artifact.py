"""Will TensorRT's ONNX parser take this Q/DQ artifact? Checked on the graph before TensorRT is called.

onnx-tensorrt takes symmetric quantization only: every QuantizeLinear/DequantizeLinear zero point
must be zero, and the quantized type signed INT8 here (UINT8 is rejected, and an INT32 bias
dequantization has no TensorRT layer). ONNX Runtime's CPU recipe (unsigned activations with zero
points, INT32 bias) breaks all three, deep inside the parser with a generic message; this check
names the recipe from the artifact's metadata and the command that makes the right artifact.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from resnext_deploy.errors import InputError
from resnext_deploy.layout import CALIBRATION_MANIFEST, artifact_name
from resnext_deploy.metadata import get_metadata

QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")


@dataclasses.dataclass(frozen=True)
class QdqFindings:
    """Q/DQ nodes of a graph and those TensorRT's parser would refuse, by reason."""

    qdq_nodes: int
    not_int8: dict[str, str]  # node name -> the quantized type it uses instead of INT8
    nonzero_zero_points: list[str]

    @property
    def parsable(self) -> bool:
        return not self.not_int8 and not self.nonzero_zero_points

    def describe(self) -> str:
        """``52 Q/DQ nodes use UINT8, 54 use INT32, 52 have non-zero zero points``."""
        by_type: dict[str, int] = {}
        for kind in self.not_int8.values():
            by_type[kind] = by_type.get(kind, 0) + 1
        parts = [f"{count} Q/DQ nodes use {kind}" for kind, count in sorted(by_type.items())]
        if self.nonzero_zero_points:
            parts.append(f"{len(self.nonzero_zero_points)} have non-zero zero points")
        return ", ".join(parts)


def _type_name(elem_type: int) -> str:
    from onnx import TensorProto

    return TensorProto.DataType.Name(elem_type)


def _constants(model: Any) -> dict[str, Any]:
    """Initializers and Constant-node outputs by name (as TensorProto)."""
    tensors = {init.name: init for init in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant" and node.output:
            value = next((a.t for a in node.attribute if a.name == "value"), None)
            if value is not None:
                tensors[node.output[0]] = value
    return tensors


def _output_dtype(node: Any) -> int:
    """A QuantizeLinear's ``output_dtype`` attribute (opset 21), 0 when unset."""
    return next((int(a.i) for a in node.attribute if a.name == "output_dtype"), 0)


def _qdq_nodes(model: Any) -> Iterator[Any]:
    return (node for node in model.graph.node if node.op_type in QDQ_OPS and node.domain in ("", "ai.onnx"))


def qdq_findings(model: Any) -> QdqFindings:
    """What TensorRT would refuse in ``model`` (an ``onnx.ModelProto``): non-INT8 Q/DQ types, non-zero zero points."""
    from onnx import TensorProto, numpy_helper

    constants = _constants(model)
    not_int8: dict[str, str] = {}
    nonzero: list[str] = []
    count = 0
    for node in _qdq_nodes(model):
        count += 1
        name = node.name or node.output[0]
        zero_point = constants.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        if zero_point is not None:
            if zero_point.data_type != TensorProto.INT8:
                not_int8[name] = _type_name(zero_point.data_type)
            if numpy_helper.to_array(zero_point).any():
                nonzero.append(name)
        elif node.op_type == "QuantizeLinear":
            declared = _output_dtype(node)  # opset 21: the output type without a zero point; UINT8 when unset
            if declared != TensorProto.INT8:
                not_int8[name] = _type_name(declared) if declared else "UINT8"
        elif node.input[0] in constants and constants[node.input[0]].data_type != TensorProto.INT8:
            not_int8[name] = _type_name(constants[node.input[0]].data_type)
    return QdqFindings(count, not_int8, nonzero)


def _weights_argument(metadata: dict[str, Any]) -> str:
    weights = metadata.get("weights") or {}
    kind, origin = weights.get("kind"), str(weights.get("origin", ""))
    if kind == "file" and origin.startswith("file:"):
        return origin[len("file:") :]
    return kind if kind in ("pretrained", "random") else "WEIGHTS"


def _calibration_data(export_dir: Path) -> tuple[str, Path | None]:
    """(--calib-data value, manifest path) from the export directory's calibration manifest, if it has one."""
    manifest = export_dir / CALIBRATION_MANIFEST
    try:
        record = json.loads(manifest.read_text(encoding="utf-8"))
        root, split = Path(str(record["root"])), record.get("split")
    except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError):
        return "DATA", None
    if split and root.name == split:
        root = root.parent
    return str(root), manifest


def tensorrt_artifact_command(onnx_path: Path, metadata: dict[str, Any]) -> str:
    """The export command that makes a TensorRT-recipe INT8 artifact next to the CPU one, same calibration images."""
    export_dir = onnx_path.parent
    data, manifest = _calibration_data(export_dir)
    command = (
        f"resnext-deploy export {metadata.get('model_name', 'MODEL')} --weights {_weights_argument(metadata)} "
        f"--precision int8 --targets onnxruntime,tensorrt --calib-data {data}"
    )
    if manifest is not None:
        command += f" --calib-manifest {manifest}"
    return command + f" --output {export_dir} --force"


def check_tensorrt_artifact(onnx_path: Path) -> QdqFindings:
    """Raise ``InputError`` (exit 2) when TensorRT's parser would refuse the Q/DQ in ``onnx_path``; else the findings."""
    import onnx

    try:
        model = onnx.load(os.fspath(onnx_path), load_external_data=False)
    except Exception as exc:  # DecodeError and friends for damaged files
        raise InputError(f"cannot read ONNX file {onnx_path}: {exc}", hint="the file is truncated or not ONNX; re-export it") from None
    findings = qdq_findings(model)
    if findings.parsable:
        return findings
    metadata = get_metadata(model)
    recipe = (metadata.get("calibration") or {}).get("recipe")
    made_with = f"the {recipe} recipe" if recipe else "a recipe that is not this toolchain's tensorrt recipe"
    raise InputError(
        f"{onnx_path.name} was quantized with {made_with} and TensorRT cannot parse it: {findings.describe()} "
        "(TensorRT takes symmetric INT8 Q/DQ only: signed INT8, zero points 0, float bias)",
        hint=f"make the TensorRT artifact ({artifact_name('int8', 'tensorrt')}) with: {tensorrt_artifact_command(onnx_path, metadata)}",
    )
