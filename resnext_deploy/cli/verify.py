"""`resnext-deploy verify`: accuracy and latency of an export vs its FP32 baseline, gated for CI."""

from __future__ import annotations

from resnext_deploy.cli._errors import handles_errors
from resnext_deploy.cli._options import (
    Baseline, BaselineOpt, BatchSizesOpt, DurationOpt, EvalDataOpt, EvalSizeOpt, ExportDirArg, GatesFileOpt,
    IterationsOpt, JunitOpt, LabelsFileOpt, MaxP99Opt, MaxTop1DropOpt, MinAgreementOpt, MinCosineOpt, MinSpeedupOpt,
    MinSqnrOpt, EvalSeedOpt, VerifyThreadsOpt, VerifyBackendOpt, WarmupOpt,
)


@handles_errors
def verify(
    directory: ExportDirArg,
    eval_data: EvalDataOpt = None,
    labels_file: LabelsFileOpt = None,
    eval_size: EvalSizeOpt = 500,
    seed: EvalSeedOpt = 0,
    baseline: BaselineOpt = Baseline.onnx,
    backend: VerifyBackendOpt = None,
    batch_sizes: BatchSizesOpt = "1,8,32",
    iterations: IterationsOpt = 50,
    warmup: WarmupOpt = 5,
    duration: DurationOpt = None,
    threads: VerifyThreadsOpt = None,
    gates: GatesFileOpt = None,
    max_top1_drop: MaxTop1DropOpt = None,
    min_agreement: MinAgreementOpt = None,
    min_cosine: MinCosineOpt = None,
    min_sqnr: MinSqnrOpt = None,
    min_speedup: MinSpeedupOpt = None,
    max_p99_ms: MaxP99Opt = None,
    junit: JunitOpt = None,
) -> None:
    """Compare DIRECTORY's artifact with its FP32 baseline (accuracy, latency), check the gates, write reports.

    Exit codes: 0 every gate passed, 1 a gate failed (all outputs are still written), 2 bad input.
    """
    from resnext_deploy.verification import VerifyOptions, verify_directory
    from resnext_deploy.verification.options import parse_batch_sizes
    from resnext_deploy.verification.outputs import print_summary

    options = VerifyOptions(
        eval_data=eval_data, labels_file=labels_file, eval_size=eval_size, seed=seed, baseline=baseline.value,
        backend=backend.value if backend is not None else None, batch_sizes=parse_batch_sizes(batch_sizes),
        iterations=iterations, warmup=warmup, duration=duration, threads=threads, gates_file=gates, junit=junit,
        thresholds={
            "max_top1_drop": max_top1_drop, "min_agreement": min_agreement, "min_cosine": min_cosine,
            "min_sqnr_db": min_sqnr, "min_speedup": min_speedup, "max_p99_ms": max_p99_ms,
        },
    )
    outcome = verify_directory(directory, options)
    print_summary(outcome.report)
    outcome.raise_for_gates()
