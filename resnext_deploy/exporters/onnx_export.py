"""torch -> ONNX export, checker, shape inference and onnxsim simplification."""

from __future__ import annotations

import io
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from resnext_deploy.errors import UsageError
from resnext_deploy.exporters.parity import DEFAULT_ATOL, DEFAULT_RTOL, compare, ort_session, random_inputs

if TYPE_CHECKING:
    import onnx
    import torch

INPUT_NAME = "input"
OUTPUT_NAME = "logits"
EXPORTERS = ("dynamo", "torchscript")
DEFAULT_EXPORTER = "dynamo"
# torch's dynamo exporter implements opset 18+ only and cannot convert these graphs down (ReduceMean's
# axes became an input in 18); the TorchScript exporter's graphs were tested at 17. 13 is the floor
# for per-channel QuantizeLinear (axis).
DEFAULT_OPSETS = {"dynamo": 18, "torchscript": 17}
MIN_OPSETS = {"dynamo": 18, "torchscript": 13}
# The exporters' ceilings (torch.onnx._constants: ONNX_MAX_OPSET, ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET); constants so the
# check runs before torch is imported (a test compares them with torch's).
MAX_OPSETS = {"dynamo": 23, "torchscript": 20}
DEFAULT_OPSET = DEFAULT_OPSETS[DEFAULT_EXPORTER]


def resolve_opset(exporter: str, opset: int | None) -> int:
    """The opset ``exporter`` writes for a requested ``opset`` (None: its default); UsageError when it cannot."""
    if exporter not in EXPORTERS:
        raise UsageError(f"unknown ONNX exporter {exporter!r}", hint=f"choose one of: {', '.join(EXPORTERS)}")
    if opset is None:
        return DEFAULT_OPSETS[exporter]
    if opset > MAX_OPSETS[exporter]:
        raise UsageError(f"--opset {opset} is newer than the {exporter} exporter supports",
                         hint=f"use --opset {MIN_OPSETS[exporter]} to {MAX_OPSETS[exporter]} (default {DEFAULT_OPSETS[exporter]})")
    if opset < MIN_OPSETS[exporter]:
        other = "" if exporter == "torchscript" else "; --exporter torchscript writes opset 13-17"
        raise UsageError(
            f"opset {opset} is too old for the {exporter} exporter",
            hint=f"use --opset {MIN_OPSETS[exporter]} or newer (default {DEFAULT_OPSETS[exporter]}){other}",
        )
    return opset


def export_to_onnx(
    model: torch.nn.Module, input_size: int, opset: int | None = None, exporter: str = DEFAULT_EXPORTER
) -> onnx.ModelProto:
    """Export with a named input/output and a dynamic batch axis, then check and infer shapes."""
    import onnx
    import torch

    opset = resolve_opset(exporter, opset)
    # batch 2, not 1: torch.export specializes a dimension whose example size is 0 or 1
    dummy = torch.zeros(2, 3, input_size, input_size)
    with torch.no_grad():
        proto = _dynamo(model, dummy, opset) if exporter == "dynamo" else _torchscript(model, dummy, opset)
    onnx.checker.check_model(proto, full_check=True)
    return onnx.shape_inference.infer_shapes(proto, check_type=True, strict_mode=True)


def _dynamo(model: torch.nn.Module, dummy: torch.Tensor, opset: int) -> onnx.ModelProto:
    """torch.export + onnxscript (``dynamo=True``); onnxscript's optimizer folds constants."""
    import torch

    program = torch.onnx.export(
        model,
        (dummy,),
        input_names=[INPUT_NAME],
        output_names=[OUTPUT_NAME],
        dynamic_shapes=({0: torch.export.Dim("batch")},),
        opset_version=opset,
        dynamo=True,
        optimize=True,
        verbose=False,
    )
    return program.model_proto


def _torchscript(model: torch.nn.Module, dummy: torch.Tensor, opset: int) -> onnx.ModelProto:
    """The legacy TorchScript exporter (``dynamo=False``), deprecated since torch 2.9."""
    import onnx
    import torch

    buffer = io.BytesIO()
    torch.onnx.export(
        model,
        (dummy,),
        buffer,
        input_names=[INPUT_NAME],
        output_names=[OUTPUT_NAME],
        dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
        opset_version=opset,
        do_constant_folding=True,
        dynamo=False,
    )
    return onnx.load_from_string(buffer.getvalue())


@dataclass
class SimplifyResult:
    """What onnxsim did, and whether its graph was kept."""

    applied: bool
    nodes_before: int
    nodes_after: int
    max_abs_diff: float | None
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def simplify(proto: onnx.ModelProto, input_size: int, seed: int = 0) -> tuple[onnx.ModelProto, SimplifyResult]:
    """Simplify with onnxsim; keep the original graph if onnxsim fails or changes the outputs."""
    import onnx
    import onnxsim

    before = len(proto.graph.node)
    try:
        simplified, checked = onnxsim.simplify(proto, check_n=0)
    except Exception as exc:  # onnxsim surfaces C++ errors as plain exceptions
        return proto, SimplifyResult(False, before, before, None, f"onnxsim failed: {exc}; kept the unsimplified graph")
    if not checked:
        return proto, SimplifyResult(False, before, before, None, "onnxsim check failed; kept the unsimplified graph")
    onnx.checker.check_model(simplified, full_check=True)
    _drop_onnxsim_metadata(simplified)
    x = random_inputs(2, input_size, seed)
    (reference,) = ort_session(proto.SerializeToString()).run(None, {INPUT_NAME: x})
    (candidate,) = ort_session(simplified.SerializeToString()).run(None, {INPUT_NAME: x})
    diff, _, bound = compare(reference, candidate, DEFAULT_ATOL, DEFAULT_RTOL)
    if not np.isfinite(diff) or diff > bound:
        reason = f"onnxsim changed outputs (max abs diff {diff:.3g} > {bound:.3g}); kept the unsimplified graph"
        return proto, SimplifyResult(False, before, before, diff, reason)
    return simplified, SimplifyResult(True, before, len(simplified.graph.node), diff, "simplified")


def _drop_onnxsim_metadata(proto: onnx.ModelProto) -> None:
    """onnxsim records ~20 bookkeeping props; the report already says what it did."""
    kept = [p for p in proto.metadata_props if not p.key.startswith("onnxsim.")]
    del proto.metadata_props[:]
    proto.metadata_props.extend(kept)


def op_counts(proto: onnx.ModelProto) -> dict[str, int]:
    """How many nodes of each op type the graph holds."""
    counts: dict[str, int] = {}
    for node in proto.graph.node:
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return dict(sorted(counts.items()))
