"""FP32 ONNX -> FP16 ONNX with float32 inputs/outputs, runnable on ONNX Runtime's CPU provider."""

from __future__ import annotations

import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from resnext_deploy.errors import InputError, UsageError
from resnext_deploy.files import atomic_path
from resnext_deploy.metadata import get_metadata, set_metadata


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


def convert_fp16(
    fp32_onnx: str | os.PathLike[str], output: str | os.PathLike[str], *, op_block_list: list[str] | None = None
) -> Fp16Result:
    """Convert every float tensor to FP16 (onnxconverter-common), keeping the graph's I/O float32."""
    import onnx
    from onnxconverter_common import float16

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
    blocked = sorted(set(float16.DEFAULT_OP_BLOCK_LIST) | set(op_block_list or []))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="the float32 number", category=UserWarning)
        converted = float16.convert_float_to_float16(model, keep_io_types=True, op_block_list=blocked)
    set_metadata(converted, {**metadata, "precision": "fp16"})
    with atomic_path(output) as tmp:
        onnx.save(converted, os.fspath(tmp))
    halves = sum(init.data_type == onnx.TensorProto.FLOAT16 for init in converted.graph.initializer)
    casts = sum(node.op_type == "Cast" for node in converted.graph.node)
    return Fp16Result(output, halves, casts, sorted(set(op_block_list or [])), round(time.perf_counter() - started, 3))
