"""What an export takes, as typed records: each value is checked once, here, when the record is made."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from resnext_deploy.calibration.recipes import RECIPES
from resnext_deploy.calibration.statistics import METHODS
from resnext_deploy.engines.base import BuildOptions
from resnext_deploy.engines.registry import AUTO, backend_names
from resnext_deploy.errors import UsageError
from resnext_deploy.export.mixed_precision import MixedPrecisionOptions
from resnext_deploy.exporters.models import DEFAULT_SEED
from resnext_deploy.exporters.onnx_export import DEFAULT_EXPORTER, EXPORTERS
from resnext_deploy.layout import PRECISIONS
from resnext_deploy.verification.options import VerifyOptions

CALIB_METHODS = (AUTO, *METHODS)
RECIPE_CHOICES = (AUTO, *RECIPES)


def check_choice(kind: str, value: str, choices: tuple[str, ...]) -> None:
    """``UsageError`` listing ``choices`` unless ``value`` is one of them."""
    if value not in choices:
        raise UsageError(f"unknown {kind} '{value}'", hint=f"use one of: {', '.join(choices)}")


@dataclass(frozen=True)
class Fp32Options:
    """How the FP32 ONNX is made and checked against PyTorch (shared by every cell of a sweep)."""

    opset: int | None = None  # None: the exporter's default
    exporter: str = DEFAULT_EXPORTER
    simplify: bool = True
    atol: float = 1e-4  # parity vs PyTorch: |diff| <= atol + rtol * max|logit|
    rtol: float = 1e-3
    input_size: int | None = None  # one of the zoo's sizes; None = the zoo's default

    def __post_init__(self) -> None:
        check_choice("exporter", self.exporter, EXPORTERS)
        if self.atol < 0 or self.rtol < 0:
            raise UsageError("--atol and --rtol must not be negative", hint="the defaults are --atol 1e-4 --rtol 1e-3")


@dataclass(frozen=True)
class CalibrationOptions:
    """Where the INT8 calibration images come from and how statistics are computed."""

    data: Path | None = None
    labels_file: Path | None = None
    size: int = 512
    manifest: Path | None = None
    method: str = AUTO  # the recipe's default
    seed: int = 0
    strict: bool = False
    keep_grouped_float: bool | None = None
    cache_dir: Path | None = None
    workers: int | None = None
    targets: tuple[str, ...] = ()  # other backends' INT8 recipes to make too (model.int8.<target>.onnx)
    min_label_coverage: float = 0.9  # data.datasets.MIN_LABEL_COVERAGE; 0 accepts a labels file covering any part
    decode_batch: int = 32  # images decoded at a time: calibration streams, it never holds the whole subset

    def __post_init__(self) -> None:
        check_choice("calibration method", self.method, CALIB_METHODS)
        for target in self.targets:
            check_choice("target", target, backend_names(with_auto=False))
        if self.size <= 0:
            raise UsageError(f"--calib-size must be positive, got {self.size}", hint="NVIDIA recommends >= 500 for CNNs")
        if self.decode_batch <= 0 or not 0.0 <= self.min_label_coverage <= 1.0:
            raise UsageError("calibration decode batch must be positive and label coverage within 0..1")
        if self.manifest is not None and self.data is None:
            raise UsageError("--calib-manifest needs --calib-data", hint="pass the image folder the manifest refers to")


@dataclass(frozen=True)
class ExportOptions:
    """Everything `resnext-deploy export` takes; the disk-dependent checks are ``preflight``'s."""

    model: str
    precision: str = "fp32"
    backend: str = AUTO
    recipe: str = AUTO
    weights: str = "pretrained"
    seed: int = DEFAULT_SEED  # of --weights random; ignored for other weights
    output: Path | None = None
    force: bool = False
    build_engine: bool = True
    fp32: Fp32Options = field(default_factory=Fp32Options)
    calibration: CalibrationOptions = field(default_factory=CalibrationOptions)
    engine: BuildOptions | None = None  # batch profile, threads, TensorRT settings; None = defaults
    verify: VerifyOptions | None = None  # the run ends with verification and gates; None skips it
    fp32_from: Path | None = None  # start from this earlier export's model.onnx instead of exporting again (sweeps)
    mixed_precision: MixedPrecisionOptions = field(default_factory=MixedPrecisionOptions)

    def __post_init__(self) -> None:
        check_choice("precision", self.precision, PRECISIONS)
        check_choice("backend", self.backend, backend_names())
        check_choice("recipe", self.recipe, RECIPE_CHOICES)
        if self.precision == "int8" and self.calibration.data is None:
            raise UsageError(
                "--precision int8 needs calibration images",
                hint="pass --calib-data DIR (an ImageNet train/ or val/ folder; --calib-manifest FILE pins the subset)",
            )
        if self.mixed_precision.enabled and self.precision != "int8":
            raise UsageError("accuracy targets (--target-*) drive INT8 mixed precision",
                             hint="add --precision int8, or drop the --target-* options")

    def resolved_output(self) -> Path:
        return self.output if self.output is not None else Path("out") / f"{self.model}-{self.precision}"
