"""CLI conventions: option groups declared once, --version, verbosity, one name per meaning, time-budgeted latency."""

from __future__ import annotations

import dataclasses
import inspect
import logging

import pytest
from typer.testing import CliRunner

from resnext_deploy.cli import app
from resnext_deploy.cli.groups import CalibrationArgs, EvaluationArgs, GateArgs, LatencyArgs, uses
from resnext_deploy.verification.gates import GATE_KINDS, GateThresholds, load_gates
from resnext_deploy.verification.latency import LatencyPlan, timed_runs

runner = CliRunner()


def _options(command: str) -> set[str]:
    result = runner.invoke(app, [command, "--help"], terminal_width=200, env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    return {word.strip("│ ,") for word in result.output.split() if word.startswith("--")}


def test_version_prints_the_installed_version():
    from resnext_deploy import environment

    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"resnext-deploy {environment.toolchain_version()}"


def test_export_and_verify_share_the_evaluation_latency_and_gate_groups():
    export, verify = _options("export"), _options("verify")
    shared = {"--eval-data", "--eval-labels", "--eval-size", "--eval-seed", "--baseline", "--batch-sizes", "--duration",
              "--iterations", "--warmup-ms", "--gates", "--max-top1-drop", "--min-agreement", "--min-cosine",
              "--min-sqnr-db", "--min-speedup", "--max-p99-ms", "--junit"}
    assert shared <= export and shared <= verify
    assert {"--calib-labels", "--calib-seed", "--no-simplify", "--atol", "--rtol", "--input-size"} <= export
    assert "--labels-file" not in export and "--min-sqnr" not in verify
    # `--seed` has one meaning, the seed of --weights random (the data subsets have --calib-seed/--eval-seed)
    assert "--seed" not in verify
    help_text = " ".join(runner.invoke(app, ["export", "--help"], terminal_width=200, env={"COLUMNS": "200"}).output.split())
    assert "--seed" in export and "Seed of --weights random" in help_text


def test_gate_flags_toml_keys_and_report_keys_are_one_name():
    flags = {item.name for item in dataclasses.fields(GateArgs)} - {"gates", "junit", "compare_to", "require_gates"}
    assert flags == {item.name for item in dataclasses.fields(GateThresholds)} == set(GATE_KINDS)


def test_flags_override_the_gates_file(tmp_path):
    gates = tmp_path / "gates.toml"
    gates.write_text("[defaults]\nmin_sqnr_db = 20\nmin_cosine = 0.9\n")
    resolved = load_gates("m", "int8", GateThresholds(min_cosine=0.99), gates)
    assert resolved.thresholds == {"max_top1_drop": 0.5, "min_sqnr_db": 20.0, "min_cosine": 0.99}
    assert resolved.sources["min_cosine"] == "flag" and "defaults" in resolved.sources["min_sqnr_db"]


def test_uses_composes_groups_into_one_signature_and_parses_them():
    seen = {}

    @uses(calibration=CalibrationArgs, evaluation=EvaluationArgs)
    def command(model: str, calibration: CalibrationArgs, evaluation: EvaluationArgs) -> None:
        seen.update(calibration=calibration, evaluation=evaluation)

    names = list(inspect.signature(command).parameters)
    assert names[0] == "model" and "calib_labels" in names and "eval_labels" in names
    assert "calibration" not in names
    defaults = {p.name: p.default for p in inspect.signature(command).parameters.values()}
    command("m", **{k: v for k, v in defaults.items() if k != "model"})
    assert isinstance(seen["calibration"], CalibrationArgs) and seen["calibration"].calib_size == 512
    assert seen["evaluation"].eval_size == 500


def test_a_field_declared_twice_is_refused():
    with pytest.raises(TypeError, match="declared twice"):
        @uses(latency=LatencyArgs)
        def command(duration: float, latency: LatencyArgs) -> None: ...


class _Clock:
    """A fake clock that only moves when a run takes ``step`` seconds, so budgets are tested without real time."""

    def __init__(self, step: float) -> None:
        self.now, self.step, self.runs = 0.0, step, 0

    def __call__(self) -> float:
        return self.now

    def run(self) -> float:
        self.now += self.step
        self.runs += 1
        return self.step


@pytest.mark.parametrize(
    ("duration", "iterations", "expected"),
    [
        (1.0, 3, 4),  # the time budget dominates: 4 runs of 0.25 s fill 1 s
        (0.1, 5, 5),  # the minimum count dominates
        (0.0, 0, 1),  # at least one run
    ],
)
def test_latency_runs_until_the_budget_and_the_minimum_count_are_met(duration, iterations, expected):
    clock = _Clock(0.25)
    times = timed_runs(clock.run, LatencyPlan((1,), duration, iterations, warmup_s=0.6), clock)
    assert times == [0.25] * expected
    assert clock.runs == expected + 3  # warm-up: 0.6 s of 0.25 s runs is 3 runs


def test_verbosity_sets_our_log_level():
    from resnext_deploy import console

    try:
        console.configure(-1)
        assert logging.getLogger("resnext_deploy").level == logging.WARNING and not console.show_tracebacks()
        console.configure(1)
        assert logging.getLogger("resnext_deploy").level == logging.DEBUG and console.show_tracebacks()
    finally:
        console.configure(0)
