"""Option types shared by several commands (Annotated aliases, as in huggingface_hub's CLI)."""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Annotated

import typer

from resnext_deploy.engines.registry import backend_names, recipe_names


class Precision(str, enum.Enum):
    fp32 = "fp32"
    fp16 = "fp16"
    int8 = "int8"


def _choices(name: str, values: tuple[str, ...]) -> type[enum.Enum]:
    """A str Enum whose members are ``values`` (Typer shows them as the option's choices)."""
    return enum.Enum(name, {value: value for value in values}, type=str)  # type: ignore[return-value]


Backend = _choices("Backend", backend_names())  # read from the registry (engines/registry.py)
Recipe = _choices("Recipe", recipe_names())


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
OutputDirOpt = Annotated[
    Path | None, typer.Option("--output", "-o", help="Output directory [default: out/MODEL-PRECISION].", show_default=False)
]
ForceOpt = Annotated[bool, typer.Option("--force", "-f", help="Overwrite existing artifacts in the output directory.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON instead of a table.")]
OpsetOpt = Annotated[int, typer.Option("--opset", help="ONNX opset to export with (13 or newer).")]


class CalibMethod(str, enum.Enum):
    auto = "auto"
    entropy = "entropy"
    minmax = "minmax"
    percentile = "percentile"


_CALIB = "Calibration (INT8)"
_ENGINE = "Engine build"
CalibDataOpt = Annotated[
    Path | None,
    typer.Option("--calib-data", help="ImageNet folder: train/ or val/ ImageFolder, or a flat folder (with --labels-file).",
                 rich_help_panel=_CALIB, show_default=False),
]
LabelsFileOpt = Annotated[
    Path | None,
    typer.Option("--labels-file", help="Labels of a flat folder: LOC_val_solution.csv or 'filename label' lines.",
                 rich_help_panel=_CALIB, show_default=False),
]
CalibSizeOpt = Annotated[int, typer.Option("--calib-size", help="Images in the class-stratified calibration subset.", rich_help_panel=_CALIB)]
CalibManifestOpt = Annotated[
    Path | None,
    typer.Option("--calib-manifest", help="Re-use a subset manifest (calibration/manifest.json of an earlier run).",
                 rich_help_panel=_CALIB, show_default=False),
]
CalibMethodOpt = Annotated[
    CalibMethod,
    typer.Option("--calib-method", help="Activation range method; auto: the recipe's own default (see README).",
                 rich_help_panel=_CALIB),
]
SeedOpt = Annotated[int, typer.Option("--seed", help="Seed of the subset selection.", rich_help_panel=_CALIB)]
StrictOpt = Annotated[bool, typer.Option("--strict", help="Fail on unreadable images instead of skipping them.", rich_help_panel=_CALIB)]
RecipeOpt = Annotated[
    Recipe,
    typer.Option("--recipe", help="INT8 Q/DQ recipe; auto: the backend's own (a GPU recipe on a CPU machine makes a portable artifact).",
                 rich_help_panel=_CALIB),
]
GroupedOpt = Annotated[
    bool | None,
    typer.Option("--keep-grouped-float/--quantize-grouped",
                 help="Leave grouped 3x3 convs in float [default: the recipe's own choice].",
                 rich_help_panel=_CALIB, show_default=False),
]
CacheDirOpt = Annotated[
    Path | None,
    typer.Option("--cache-dir", help="Calibration statistics cache [default: $RESNEXT_DEPLOY_CACHE or ~/.cache/resnext-deploy].",
                 rich_help_panel=_CALIB, show_default=False),
]
ThreadsOpt = Annotated[int | None, typer.Option("--threads", help="ONNX Runtime threads [default: all cores].", rich_help_panel=_ENGINE, show_default=False)]
MinBatchOpt = Annotated[int, typer.Option("--min-batch", help="TensorRT profile: smallest batch.", rich_help_panel=_ENGINE)]
OptBatchOpt = Annotated[int, typer.Option("--opt-batch", help="TensorRT profile: batch to tune for.", rich_help_panel=_ENGINE)]
MaxBatchOpt = Annotated[int, typer.Option("--max-batch", help="TensorRT profile: largest batch.", rich_help_panel=_ENGINE)]
WorkspaceOpt = Annotated[int | None, typer.Option("--workspace-mb", help="TensorRT workspace limit in MiB.", rich_help_panel=_ENGINE, show_default=False)]
TimingCacheOpt = Annotated[Path | None, typer.Option("--timing-cache", help="Persistent TensorRT timing cache file.", rich_help_panel=_ENGINE, show_default=False)]
HardwareCompatOpt = Annotated[bool, typer.Option("--hardware-compatible", help="TensorRT engine that runs on Ampere and newer GPUs.", rich_help_panel=_ENGINE)]
VersionCompatOpt = Annotated[bool, typer.Option("--version-compatible", help="TensorRT engine that runs on later TensorRT releases.", rich_help_panel=_ENGINE)]
NoEngineOpt = Annotated[bool, typer.Option("--no-engine", help="Stop after the ONNX artifacts (build on the device later).", rich_help_panel=_ENGINE)]


class Baseline(str, enum.Enum):
    onnx = "onnx"
    torch = "torch"


EvalDataOpt = Annotated[
    Path | None,
    typer.Option("--eval-data", help="Evaluation images (ImageFolder, train/val root or flat folder); random inputs when absent."),
]
EvalSizeOpt = Annotated[int, typer.Option("--eval-size", help="Images in the deterministic evaluation subset.")]
EvalSeedOpt = Annotated[int, typer.Option("--seed", help="Seed of the evaluation subset and the random inputs.")]
BaselineOpt = Annotated[
    Baseline, typer.Option("--baseline", help="FP32 reference: model.onnx on ONNX Runtime, or the PyTorch model.")
]
VerifyBackendOpt = Annotated[
    Backend | None, typer.Option("--backend", "-b", help="Run the target on this backend [default: the one in report.json].", show_default=False)
]
BatchSizesOpt = Annotated[str, typer.Option("--batch-sizes", help="Comma-separated latency batch sizes.")]
IterationsOpt = Annotated[int, typer.Option("--iterations", help="Timed runs per batch size (0 skips latency).")]
WarmupOpt = Annotated[int, typer.Option("--warmup", help="Untimed runs before timing.")]
DurationOpt = Annotated[
    float | None, typer.Option("--duration", help="Time each batch size for this many seconds instead of --iterations.", show_default=False)
]
VerifyThreadsOpt = Annotated[int | None, typer.Option("--threads", help="Inference threads [default: every usable core].", show_default=False)]
GatesFileOpt = Annotated[
    Path | None,
    typer.Option("--gates", help="TOML gates file: [defaults] and [models.NAME.PRECISION] thresholds; flags override it.", show_default=False),
]
MaxTop1DropOpt = Annotated[
    float | None, typer.Option("--max-top1-drop", help="Largest allowed top-1 drop, percentage points [default: 0.5].", show_default=False)
]
MinAgreementOpt = Annotated[
    float | None, typer.Option("--min-agreement", help="Smallest top-1 agreement with the baseline (fraction 0..1).", show_default=False)
]
MinCosineOpt = Annotated[float | None, typer.Option("--min-cosine", help="Smallest mean logits cosine.", show_default=False)]
MinSqnrOpt = Annotated[float | None, typer.Option("--min-sqnr", help="Smallest logits SQNR in dB.", show_default=False)]
MinSpeedupOpt = Annotated[
    float | None, typer.Option("--min-speedup", help="Smallest p50 speedup over the baseline, each batch size.", show_default=False)
]
MaxP99Opt = Annotated[
    float | None, typer.Option("--max-p99-ms", help="Largest target p99 latency in ms, each batch size.", show_default=False)
]
NoVerifyOpt = Annotated[bool, typer.Option("--no-verify", help="Skip the verification and gates at the end of the export.")]
JunitOpt = Annotated[Path | None, typer.Option("--junit", help="Write the gates as JUnit XML here.", show_default=False)]


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
