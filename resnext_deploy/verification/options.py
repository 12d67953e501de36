"""What `resnext-deploy verify` takes, checked before any heavy work starts."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from resnext_deploy.engines.base import BuildOptions
from resnext_deploy.engines.registry import DEFAULT_BACKEND, get_spec
from resnext_deploy.errors import UsageError
from resnext_deploy.verification.gates import GateThresholds

BASELINES = ("onnx", "torch")
CPU_PROVIDER = "CPUExecutionProvider"  # the FP32 baseline's default: never TensorRT or TF32 against TensorRT
DEFAULT_BATCH_SIZES = (1, 8)


def parse_providers(text: str) -> tuple[str, ...] | None:
    """``"CPUExecutionProvider"`` / ``"CUDAExecutionProvider,CPUExecutionProvider"`` -> a tuple; ``"auto"`` -> None."""
    names = tuple(part.strip() for part in str(text).split(",") if part.strip())
    if names == ("auto",):
        return None
    if not names or "auto" in names:
        raise UsageError(f"bad provider list {text!r}",
                         hint="pass ONNX Runtime provider names separated by commas, e.g. CPUExecutionProvider, or 'auto'")
    return names


def parse_batch_sizes(text: str | list[int] | tuple[int, ...]) -> tuple[int, ...]:
    """``"1,8,32"`` -> ``(1, 8, 32)``; anything but positive integers is a ``UsageError``."""
    if isinstance(text, (list, tuple)):
        values = list(text)
    else:
        parts = [part.strip() for part in str(text).split(",") if part.strip()]
        try:
            values = [int(part) for part in parts]
        except ValueError:
            values = []
    if not values or any(not isinstance(v, int) or v <= 0 for v in values):
        raise UsageError(f"bad batch sizes {text!r}", hint="pass positive integers separated by commas, e.g. --batch-sizes 1,8,32")
    return tuple(dict.fromkeys(values))


@dataclass
class VerifyOptions:
    """Evaluation data, baseline/target choice, latency settings and gate thresholds.

    Gate thresholds left at None come from ``gates_file`` or the built-in defaults; a value given
    here overrides the file.
    """

    eval_data: Path | None = None
    labels_file: Path | None = None
    eval_size: int = 500
    seed: int = 0
    baseline: str = "onnx"
    baseline_providers: tuple[str, ...] | None = (CPU_PROVIDER,)  # ONNX Runtime providers of the onnx baseline; None: auto
    backend: str | None = None
    batch_sizes: tuple[int, ...] = DEFAULT_BATCH_SIZES
    duration: float = 3.0  # seconds of timed runs per batch size and side, as trtexec's --duration
    iterations: int = 10  # at least this many timed runs, as trtexec's --iterations
    warmup_ms: float = 200.0  # untimed warm-up, as trtexec's --warmUp (at least one run)
    latency: bool = True
    threads: int | None = None
    eval_batch_size: int = 32
    random_eval_size: int = 32
    gates_file: Path | None = None
    thresholds: GateThresholds = field(default_factory=GateThresholds)
    junit: Path | None = None
    reference: Path | None = None  # bare .onnx only: the FP32 model to compare with
    model: str | None = None  # bare .onnx only: zoo entry for a graph without metadata
    output: Path | None = None  # bare .onnx only: where the reports go
    compare_to: Path | None = None  # an earlier sweep.json or report.json for the regression gates
    plot: bool = True
    progress: bool = True
    require_gates: bool = False  # a skipped gate (metric not measured) fails like a failed one: exit 1
    min_label_coverage: float | None = None  # None: data.datasets.MIN_LABEL_COVERAGE; 0 accepts any
    cache_dir: Path | None = None  # FP32 baseline logits cache (calibration.baseline_cache); None: the default cache

    def __post_init__(self) -> None:
        if self.baseline not in BASELINES:
            raise UsageError(f"unknown baseline {self.baseline!r}", hint=f"use one of: {', '.join(BASELINES)}")
        self.batch_sizes = parse_batch_sizes(self.batch_sizes)
        if self.eval_size <= 0:
            raise UsageError(f"--eval-size must be positive, got {self.eval_size}", hint="use e.g. --eval-size 500")
        if self.iterations < 0 or self.warmup_ms < 0 or self.duration < 0:
            raise UsageError("--iterations, --duration and --warmup-ms must not be negative",
                             hint="use --no-latency to skip latency")
        if isinstance(self.thresholds, dict):
            self.thresholds = GateThresholds(**self.thresholds)
        if self.threads is not None and self.threads <= 0:
            raise UsageError(f"--threads must be positive, got {self.threads}", hint="omit --threads to use every core")
        if self.eval_batch_size <= 0 or self.random_eval_size <= 0:
            raise UsageError("evaluation batch size and random input count must be positive")
        if self.baseline_providers is not None:  # checked before any heavy work: names the baseline's runtime knows
            self.baseline_providers = tuple(self.baseline_providers)
            baseline_runtime = get_spec(DEFAULT_BACKEND)
            if baseline_runtime.check_options is not None:
                baseline_runtime.check_options(BuildOptions(precision="fp32", providers=self.baseline_providers))
        if self.junit is not None and Path(self.junit).is_dir():
            raise UsageError(f"--junit {self.junit} is a folder", hint="pass a file name, e.g. --junit out/junit.xml")

    @property
    def measures_latency(self) -> bool:
        return self.latency and (self.duration > 0 or self.iterations > 0)
