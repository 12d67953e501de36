"""The FP32 export stage: fold BN, export, simplify, check parity, write with metadata."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from resnext_deploy.errors import ParityError
from resnext_deploy.exporters.fold import fold_batchnorm
from resnext_deploy.exporters.onnx_export import (
    DEFAULT_EXPORTER,
    INPUT_NAME,
    OUTPUT_NAME,
    SimplifyResult,
    export_to_onnx,
    op_counts,
    resolve_opset,
    simplify,
)
from resnext_deploy.exporters.parity import (
    DEFAULT_ATOL,
    DEFAULT_RTOL,
    ParityResult,
    check_parity,
    compare,
    random_inputs,
)
from resnext_deploy.files import sha256_file, write_bytes
from resnext_deploy.metadata import set_metadata

if TYPE_CHECKING:
    import torch


@dataclass
class ExportResult:
    """Everything the export stage measured, for report.json."""

    path: Path
    sha256: str
    exporter: str  # "dynamo" | "torchscript": which torch.onnx exporter made the graph
    opset: int
    size_bytes: int
    batchnorms_folded: int
    fold_max_abs_diff: float
    simplify: SimplifyResult
    parity: ParityResult
    op_counts: dict[str, int]
    seconds: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path.name,
            "sha256": self.sha256,
            "exporter": self.exporter,
            "opset": self.opset,
            "size_bytes": self.size_bytes,
            "batchnorm": {"folded": self.batchnorms_folded, "remaining": self.op_counts.get("BatchNormalization", 0),
                          "fold_max_abs_diff": self.fold_max_abs_diff},
            "simplify": self.simplify.to_dict(),
            "parity": self.parity.to_dict(),
            "op_counts": self.op_counts,
            "seconds": {k: round(v, 3) for k, v in self.seconds.items()},
        }


def fold_max_abs_diff(model: torch.nn.Module, folded: torch.nn.Module, input_size: int) -> float:
    """Worst absolute logit difference between the unfolded and folded models on random inputs."""
    import torch

    x = torch.from_numpy(random_inputs(4, input_size, seed=7))
    with torch.no_grad():
        diff, _, _ = compare(model(x).numpy(), folded(x).numpy(), DEFAULT_ATOL, DEFAULT_RTOL)
    return diff


def export_fp32(
    model: torch.nn.Module,
    output: Path,
    *,
    input_size: int,
    metadata: dict[str, Any],
    opset: int | None = None,
    exporter: str = DEFAULT_EXPORTER,
    parity_batch_sizes: tuple[int, ...] = (1, 8),
    simplify_graph: bool = True,
    atol: float = DEFAULT_ATOL,
    rtol: float = DEFAULT_RTOL,
) -> ExportResult:
    """Export ``model`` to ``output`` (written atomically only once every check has passed).

    ``exporter`` picks torch's dynamo or TorchScript ONNX exporter; ``opset=None`` takes its default.
    """
    opset = resolve_opset(exporter, opset)
    seconds: dict[str, float] = {}
    start = time.perf_counter()
    folded = fold_batchnorm(model)
    fold_diff = fold_max_abs_diff(model, folded.model, input_size)
    seconds["fold"] = time.perf_counter() - start

    start = time.perf_counter()
    proto = export_to_onnx(folded.model, input_size, opset, exporter)
    seconds["export"] = time.perf_counter() - start

    start = time.perf_counter()
    if simplify_graph:
        proto, simplified = simplify(proto, input_size)
    else:
        nodes = len(proto.graph.node)
        simplified = SimplifyResult(False, nodes, nodes, None, "simplification skipped (--no-simplify)")
    seconds["simplify"] = time.perf_counter() - start

    set_metadata(
        proto, metadata | {"opset": opset, "exporter": exporter, "input_name": INPUT_NAME, "output_name": OUTPUT_NAME}
    )
    data = proto.SerializeToString()

    start = time.perf_counter()
    parity = check_parity(model, data, input_size, batch_sizes=parity_batch_sizes, atol=atol, rtol=rtol)
    seconds["parity"] = time.perf_counter() - start
    if not parity:
        raise ParityError(
            f"ONNX Runtime output differs from PyTorch: max abs diff {parity.max_abs_diff:.3g} "
            f"(allowed {parity.bound:.3g}), min cosine {parity.min_cosine:.6f}",
            hint="this is a bug in the export; please report it with the model name and report.json",
        )
    write_bytes(output, data)
    return ExportResult(
        path=output,
        sha256=sha256_file(output),
        exporter=exporter,
        opset=opset,
        size_bytes=output.stat().st_size,
        batchnorms_folded=folded.batchnorms_before,
        fold_max_abs_diff=fold_diff,
        simplify=simplified,
        parity=parity,
        op_counts=op_counts(proto),
        seconds=seconds,
    )
