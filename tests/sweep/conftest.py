"""Sweep fixtures: two tiny zoo entries (same weights, two interpolations) and one finished local sweep."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest

from resnext_deploy.zoo import ModelSpec, PreprocessConfig, register_model

MODELS = ("resnext_tiny", "resnext_tiny_bicubic")
PRECISIONS = ("fp32", "int8")
BACKEND = "onnxruntime"
# The measurement settings every sweep of these tests uses: flags and library options spell the same values.
EVAL_SIZE, CALIB_SIZE, ITERATIONS = 60, 50, 2
FLAGS = ["--eval-size", str(EVAL_SIZE), "--calib-size", str(CALIB_SIZE), "--calib-method", "minmax",
         "--batch-sizes", "1,8", "--iterations", str(ITERATIONS), "--duration", "0", "--warmup-ms", "0"]


@pytest.fixture(scope="session")
def tiny_models(tiny_spec: ModelSpec) -> tuple[str, ...]:
    """``resnext_tiny`` and ``resnext_tiny_bicubic`` (the same network read with bicubic resizing), registered."""
    register_model(dataclasses.replace(tiny_spec, name=MODELS[1], preprocess=PreprocessConfig(
        input_size=tiny_spec.preprocess.input_size, crop_pct=tiny_spec.preprocess.crop_pct, interpolation="bicubic")))
    return MODELS


def sweep_options(output: Path, data: Path, checkpoint: Path, **changes):  # type: ignore[no-untyped-def]
    """The library options equal to ``FLAGS`` (plus the CLI defaults), so CLI runs resume library runs."""
    from resnext_deploy.export import CalibrationOptions
    from resnext_deploy.sweep import SweepOptions, make_plan
    from resnext_deploy.verification import VerifyOptions
    from resnext_deploy.verification.gates import GateThresholds

    plan = make_plan(models=changes.pop("models", MODELS), precisions=changes.pop("precisions", PRECISIONS),
                     backends=[BACKEND], weights=str(checkpoint))
    verify = VerifyOptions(eval_size=EVAL_SIZE, batch_sizes=(1, 8), iterations=ITERATIONS, duration=0.0, warmup_ms=0.0,
                           thresholds=changes.pop("thresholds", GateThresholds(max_top1_drop=5.0)),
                           compare_to=changes.pop("compare_to", None), eval_data=changes.pop("eval_data", None))
    calibration = CalibrationOptions(data=changes.pop("calib_data", data), size=CALIB_SIZE, method="minmax")
    return SweepOptions(plan=plan, output=output, calibration=calibration, verify=verify, **changes)


@pytest.fixture(scope="session")
def local_sweep(tmp_path_factory: pytest.TempPathFactory, synthetic_imagenet, tiny_checkpoint, tiny_models) -> Path:  # type: ignore[no-untyped-def]
    """A finished sweep of 2 tiny models x fp32/int8 on ONNX Runtime, in this process (read-only: copy it)."""
    from resnext_deploy.sweep import run_sweep

    output = tmp_path_factory.mktemp("sweep") / "local"
    outcome = run_sweep(sweep_options(output, synthetic_imagenet.root, tiny_checkpoint.checkpoint, workers=1), ["test"])
    assert outcome, outcome.sweep["failed_cells"] + outcome.sweep["error_cells"]
    return output


def copy_fp32_exports(source: Path, target: Path, models: tuple[str, ...] = MODELS) -> None:
    """Seed a new sweep directory with the FP32 exports of ``source`` (a resumed sweep keeps them)."""
    for model in models:
        shutil.copytree(source / model / "fp32", target / model / "fp32")
