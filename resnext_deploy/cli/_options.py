"""Option types shared by several commands (Annotated aliases, as in huggingface_hub's CLI)."""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Annotated

import typer

from resnext_deploy.engines.registry import backend_names
from resnext_deploy.export.mixed_precision import FALLBACK_CHOICES
from resnext_deploy.export.options import CALIB_METHODS, RECIPE_CHOICES
from resnext_deploy.exporters.onnx_export import EXPORTERS
from resnext_deploy.layout import PRECISIONS
from resnext_deploy.verification.options import BASELINES


def _choices(name: str, values: tuple[str, ...]) -> type[enum.Enum]:
    """A str Enum whose members are ``values`` (Typer shows them as the option's choices)."""
    return enum.Enum(name, {value: value for value in values}, type=str)  # type: ignore[return-value]


# Each choice list is read from the module that owns it.
Precision = _choices("Precision", PRECISIONS)
Backend = _choices("Backend", backend_names())  # the registry (engines/registry.py)
Recipe = _choices("Recipe", RECIPE_CHOICES)  # auto + calibration.recipes.RECIPES
CalibMethod = _choices("CalibMethod", CALIB_METHODS)  # auto + calibration.statistics.METHODS
Exporter = _choices("Exporter", EXPORTERS)
Baseline = _choices("Baseline", BASELINES)
FallbackPrecision = _choices("FallbackPrecision", FALLBACK_CHOICES)  # auto + layout.FALLBACK_PRECISIONS


ModelArg = Annotated[str, typer.Argument(help="Zoo model name (see `resnext-deploy models`).", show_default=False)]
PrecisionOpt = Annotated[Precision, typer.Option("--precision", "-p", help="Precision of the deployed artifact.")]
BackendOpt = Annotated[
    Backend, typer.Option("--backend", "-b", help="Engine; auto: a GPU engine where one runs, else the CPU engine measured "
                          "fastest for the precision (docs/DESIGN.md), else ONNX Runtime; it says why.")
]
WeightsOpt = Annotated[
    str,
    typer.Option(
        "--weights", "-w", help="'pretrained' (timm, uses its cache), 'random' (smoke runs), or a .pth/.pt/.safetensors path."
    ),
]
SeedOpt = Annotated[
    int, typer.Option("--seed", min=0, help="Seed of --weights random: the same seed gives the same model (same FP32 "
                      "sha256) on every run; recorded in report.json and the ONNX metadata.")
]
OutputDirOpt = Annotated[
    Path | None, typer.Option("--output", "-o", help="Output directory [default: out/MODEL-PRECISION].", show_default=False)
]
ForceOpt = Annotated[bool, typer.Option("--force", "-f", help="Overwrite existing artifacts in the output directory.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON instead of a table.")]


Fp32FromOpt = Annotated[
    Path | None,
    typer.Option("--fp32-from", help="Start from an earlier export's model.onnx (same model and input size) instead of "
                 "exporting again: one FP32 export serves several precisions. --weights is then not used.",
                 show_default=False),
]
NoEngineOpt = Annotated[bool, typer.Option("--no-engine", help="Stop after the ONNX artifacts (build on the device later).", rich_help_panel="Engine build")]


VerifyBackendOpt = Annotated[
    Backend | None, typer.Option("--backend", "-b", help="Run the target on this backend [default: the one in report.json].", show_default=False)
]
VerifyThreadsOpt = Annotated[int | None, typer.Option("--threads", help="Inference threads [default: every usable core].", show_default=False)]
NoVerifyOpt = Annotated[bool, typer.Option("--no-verify", help="Skip the verification and gates at the end of the export.")]


class BundleFormat(str, enum.Enum):
    tar = "tar"
    triton = "triton"


ExportDirArg = Annotated[Path, typer.Argument(help="Export directory written by `resnext-deploy export`.", show_default=False)]
BundleArg = Annotated[Path, typer.Argument(help="Bundle: a .tar.gz from `resnext-deploy package`, or its unpacked folder.", show_default=False)]
ImagesArg = Annotated[list[Path], typer.Argument(help="Image files (JPEG, PNG).", show_default=False)]
BundleOutputOpt = Annotated[
    Path,
    typer.Option("--output", "-o", help="Bundle file (tar), or model repository folder (triton).", show_default=False),
]
BundleFormatOpt = Annotated[
    BundleFormat, typer.Option("--format", help="tar: one .tar.gz edge bundle; triton: a Triton model repository.")
]
TritonPlanOpt = Annotated[
    bool, typer.Option("--plan", help="triton: serve the bundled TensorRT engine (tensorrt_plan) instead of the ONNX model.")
]
UnpackDirOpt = Annotated[
    Path | None,
    typer.Option("--output", "-o", help="Folder to unpack a .tar.gz into [default: the tarball's name without .tar.gz, next to it].",
                 show_default=False),
]
TopOpt = Annotated[int, typer.Option("--top", "-k", help="How many classes to show per image.", min=1)]
