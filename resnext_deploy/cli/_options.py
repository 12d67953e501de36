"""Option types shared by several commands (Annotated aliases, as in huggingface_hub's CLI)."""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Annotated

import typer


class Precision(str, enum.Enum):
    fp32 = "fp32"
    fp16 = "fp16"
    int8 = "int8"


class Backend(str, enum.Enum):
    auto = "auto"
    onnxruntime = "onnxruntime"
    tensorrt = "tensorrt"


ModelArg = Annotated[str, typer.Argument(help="Zoo model name (see `resnext-deploy models`).", show_default=False)]
PrecisionOpt = Annotated[Precision, typer.Option("--precision", "-p", help="Precision of the deployed artifact.")]
BackendOpt = Annotated[
    Backend, typer.Option("--backend", "-b", help="auto: TensorRT when it and a GPU are present, else ONNX Runtime.")
]
WeightsOpt = Annotated[
    str,
    typer.Option(
        "--weights", "-w", help="'pretrained' (timm, uses its cache), 'random' (smoke runs), or a .pth/.pt/.safetensors path."
    ),
]
OutputDirOpt = Annotated[
    Path | None, typer.Option("--output", "-o", help="Output directory [default: out/MODEL-PRECISION].", show_default=False)
]
ForceOpt = Annotated[bool, typer.Option("--force", "-f", help="Overwrite existing artifacts in the output directory.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON instead of a table.")]
OpsetOpt = Annotated[int, typer.Option("--opset", help="ONNX opset to export with (13 or newer).")]
