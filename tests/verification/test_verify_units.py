"""Fast checks of verification pieces that need no model: gates, metrics, report outputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from resnext_deploy.errors import InputError, UsageError
from resnext_deploy.report import Report
from resnext_deploy.verification.accuracy import compare_logits
from resnext_deploy.verification.gates import evaluate_gates, load_gates
from resnext_deploy.verification.options import parse_batch_sizes
from resnext_deploy.verification.runners import torch_weights_argument


def test_gate_precedence_defaults_file_model_precision_flags(tmp_path: Path) -> None:
    path = tmp_path / "g.toml"
    path.write_text("[defaults]\nmin_cosine = 0.9\n[models.m]\nmin_cosine = 0.95\n[models.m.int8]\nmax_top1_drop = 1.0\n")
    gates = load_gates("m", "int8", {"min_cosine": None}, path)
    assert gates.thresholds == {"max_top1_drop": 1.0, "min_cosine": 0.95}
    assert load_gates("m", "fp16", None, path).thresholds["max_top1_drop"] == 0.5
    assert load_gates("m", "int8", {"max_top1_drop": 0.2}, path).thresholds["max_top1_drop"] == 0.2


def test_gates_pass_fail_skip_with_margins() -> None:
    gates = load_gates("m", "int8", {"max_top1_drop": 1.0, "min_agreement": 0.99, "min_speedup": 2.0})
    latency = {"per_batch": {"1": {"baseline": {}, "target": {"p99_ms": 1.0}, "speedup": 3.0}, "8": {"skipped": "too big"}}}
    results = {r.name: r for r in evaluate_gates(gates, {"top1_drop_pp": None, "top1_agreement": 0.95}, latency)}
    assert results["max_top1_drop"].status == "skipped"
    assert results["min_agreement"].failed and results["min_agreement"].margin == pytest.approx(-0.04)
    assert results["min_speedup@b1"].passed and results["min_speedup@b1"].margin == pytest.approx(1.0)
    assert results["min_speedup@b8"].status == "skipped" and results["min_speedup@b8"].reason == "too big"


def test_metrics_on_known_logits() -> None:
    ref = np.array([[3.0, 1.0, 0.0], [0.0, 2.0, 1.0]], dtype=np.float32)
    tgt = ref.copy()
    tgt[1] = [2.5, 2.0, 1.0]
    metrics = compare_logits(ref, tgt, np.array([0, 1]))
    assert metrics["top1_agreement"] == 0.5 and metrics["baseline_top1"] == 100.0 and metrics["target_top1"] == 50.0
    assert metrics["top1_drop_pp"] == 50.0
    assert metrics["sqnr_db"] == pytest.approx(10 * np.log10(15.0 / 6.25))
    same = compare_logits(ref, ref, None)
    assert same["sqnr_db"] is None and same["identical_logits"] is True
    gate = evaluate_gates(load_gates("m", "fp32", {"min_sqnr_db": 30.0}), same, None)[1]
    assert gate.name == "min_sqnr_db" and gate.passed and "identical" in gate.reason


def test_bad_batch_sizes_and_random_weights_baseline() -> None:
    assert parse_batch_sizes("1, 8,32,8") == (1, 8, 32)
    for bad in ("", "a", "1,-2", "0"):
        with pytest.raises(UsageError):
            parse_batch_sizes(bad)
    with pytest.raises(UsageError, match="random weights"):
        torch_weights_argument(Report(weights={"kind": "random", "origin": "random"}))
    with pytest.raises(InputError):
        torch_weights_argument(Report(weights={"kind": "file", "origin": "file:/nonexistent/x.pth"}))


def test_missing_report_exits_2(tmp_path: Path) -> None:
    from resnext_deploy.cli import app

    result = CliRunner().invoke(app, ["verify", str(tmp_path)])
    assert result.exit_code == 2 and "report.json" in result.output
