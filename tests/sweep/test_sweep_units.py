"""Sweep building blocks without models: plans, shard bounds, the Pareto front, regression gates."""

from __future__ import annotations

from pathlib import Path

import pytest

from resnext_deploy.errors import UsageError
from resnext_deploy.sweep.outputs import pareto_front
from resnext_deploy.sweep.plan import make_plan
from resnext_deploy.verification.compare import EarlierRun
from resnext_deploy.verification.gates import evaluate_gates, load_gates
from resnext_deploy.verification.shards import shard_bounds


def test_flags_replace_the_plan_lists_and_weights_resolve_next_to_the_plan(tmp_path: Path) -> None:
    (tmp_path / "ckpt.pth").write_bytes(b"x")
    plan_file = tmp_path / "plan.toml"
    plan_file.write_text('models = ["tv_resnext50_32x4d", "resnext50d_32x4d", "tv_resnext50_32x4d"]\n'
                         'precisions = ["int8", "fp32"]\nbackends = ["onnxruntime"]\n'
                         '[weights]\nresnext50d_32x4d = "ckpt.pth"\n')
    plan = make_plan(plan_file)
    assert plan.models == ("tv_resnext50_32x4d", "resnext50d_32x4d")
    assert plan.weights == {"tv_resnext50_32x4d": "pretrained", "resnext50d_32x4d": str(tmp_path / "ckpt.pth")}
    assert plan.cells()[:2] == [("tv_resnext50_32x4d", "int8", "onnxruntime"), ("tv_resnext50_32x4d", "fp32", "onnxruntime")]
    flagged = make_plan(plan_file, models="resnext50d_32x4d", precisions="fp16", weights="random")
    assert (flagged.models, flagged.precisions, flagged.weights) == (("resnext50d_32x4d",), ("fp16",), {"resnext50d_32x4d": "random"})


def test_auto_backend_resolves_on_this_machine() -> None:
    from resnext_deploy.engines import resolve_backend

    plan = make_plan(models=["resnext50d_32x4d"], backends=["auto"])
    assert plan.precisions == ("fp32", "fp16", "int8")
    assert plan.cells() == [("resnext50d_32x4d", p, resolve_backend("auto", p)[0].name) for p in plan.precisions]


def test_a_weights_value_that_is_no_string_is_a_usage_error(tmp_path: Path) -> None:
    plan_file = tmp_path / "plan.toml"
    plan_file.write_text('models = ["resnext50d_32x4d"]\nweights = 3\n')
    with pytest.raises(UsageError, match="weights must be a string"):
        make_plan(plan_file)


@pytest.mark.parametrize(("count", "batch", "shards"), [(60, 16, 3), (60, 32, 8), (1, 32, 4), (100, 8, 7), (64, 16, 4)])
def test_shards_cover_every_image_once_on_batch_boundaries(count: int, batch: int, shards: int) -> None:
    bounds = shard_bounds(count, batch, shards)
    assert bounds[0][0] == 0 and bounds[-1][1] == count
    assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))
    assert all(start % batch == 0 for start, _ in bounds)
    assert len(bounds) == min(shards, -(-count // batch))
    sizes = [stop - start for start, stop in bounds[:-1]]
    assert max(sizes, default=0) - min(sizes, default=0) <= batch


def test_pareto_front_keeps_points_nothing_beats_on_both_axes() -> None:
    points = [(10.0, 80.0), (5.0, 79.0), (12.0, 79.5), (5.0, 78.0), (20.0, 81.0), (20.0, 80.5)]
    assert pareto_front(points) == [1, 0, 4]
    assert pareto_front([]) == []


def _record(top1: float | None, p50: dict[str, float], count: int = 60, cpu: str = "cpu A") -> dict:
    eval_identity = {"kind": "images", "layout": "imagefolder", "split": "val", "available": 200, "requested": count,
                     "seed": 0, "count": count}
    return {"model": "m", "precision": "int8", "backend": "onnxruntime", "target_top1": top1, "p50_ms": p50,
            "eval": eval_identity, "cpu": cpu}


def test_regression_gates_compare_top1_and_p50_with_the_earlier_run() -> None:
    current_eval = _record(None, {})["eval"]
    earlier = EarlierRun(Path("old/sweep.json"), [_record(80.0, {"1": 10.0, "8": 50.0})]).against(
        "m", "int8", "onnxruntime", current_eval, "cpu A")
    gates = load_gates("m", "int8", comparing=True)
    assert gates.thresholds["max_top1_regression"] == 0.5 and gates.thresholds["max_latency_growth"] == 0.25
    latency = {"per_batch": {"1": {"target": {"p50_ms": 13.0}}, "8": {"target": {"p50_ms": 50.0}}}}
    results = {r.name: r for r in evaluate_gates(gates, {"target_top1": 79.0, "top1_drop_pp": 0.2}, latency, earlier)}
    assert results["max_top1_regression"].status == "failed" and results["max_top1_regression"].measured == pytest.approx(1.0)
    assert results["max_latency_growth@b1"].status == "failed" and results["max_latency_growth@b1"].measured == pytest.approx(0.3)
    assert results["max_latency_growth@b8"].status == "passed"
    assert results["max_top1_regression"].reason == "vs old/sweep.json [m/int8-onnxruntime]"


def test_regression_gates_skip_with_the_reason_when_runs_are_not_comparable() -> None:
    run = EarlierRun(Path("old.json"), [_record(80.0, {"1": 10.0}, count=50, cpu="cpu B")])
    gates = load_gates("m", "int8", comparing=True)
    latency = {"per_batch": {"1": {"target": {"p50_ms": 10.0}}}}
    other = run.against("m", "int8", "onnxruntime", _record(None, {})["eval"], "cpu A")
    results = {r.name: r for r in evaluate_gates(gates, {"target_top1": 70.0}, latency, other)}
    assert results["max_top1_regression"].status == "skipped" and "evaluated other images" in results["max_top1_regression"].reason
    assert results["max_latency_growth"].status == "skipped" and "another CPU" in results["max_latency_growth"].reason
    absent = run.against("m", "fp16", "onnxruntime", _record(None, {})["eval"], "cpu A")
    assert "holds no m/fp16-onnxruntime" in evaluate_gates(gates, {"target_top1": 70.0}, latency, absent)[-1].reason
    unset = {r.name: r for r in evaluate_gates(load_gates("m", "int8", {"max_top1_regression": 1.0}), {}, None)}
    assert unset["max_top1_regression"].reason == "no --compare-to run given"


def test_the_summary_names_pareto_png_only_when_one_was_written(tmp_path: Path, capsys) -> None:
    from resnext_deploy import console
    from resnext_deploy.sweep.outputs import print_summary, write_pareto_plot

    row = {"cell": "m/fp32-onnxruntime", "status": "passed", "top1": 70.0, "top1_delta_pp": 0.0, "agreement": 1.0,
           "p50_ms_b1": None, "images_per_s_b8": None, "size_bytes": 1000, "failed_gates": []}
    sweep = {"cells": [row], "pareto_front": [], "scheduler": {"kind": "local"}}
    (tmp_path / "sweep.json").write_text("{}")
    (tmp_path / "sweep.md").write_text("")
    assert write_pareto_plot(tmp_path, [row]) is None  # untimed (--no-latency): nothing to plot
    with console.out.capture() as captured:
        print_summary(sweep, tmp_path)
    text = captured.get()
    assert "sweep.md" in text and "sweep.json" in text and "pareto.png" not in text


@pytest.mark.parametrize(("content", "problem"), [(b"not a checkpoint at all", "neither a torch.save archive"),
                                                  (b"", "neither a torch.save archive")])
def test_a_sweep_checkpoint_that_is_no_checkpoint_exits_2_before_any_cell(tmp_path: Path, content: bytes,
                                                                          problem: str) -> None:
    from typer.testing import CliRunner

    from resnext_deploy.cli import app

    weights = tmp_path / "garbage.pth"
    weights.write_bytes(content)
    result = CliRunner().invoke(app, ["sweep", "--models", "resnext50d_32x4d", "--precisions", "fp32", "--backends",
                                      "onnxruntime", "--weights", str(weights), "--output", str(tmp_path / "out")])
    assert result.exit_code == 2 and problem in " ".join(result.output.split()), result.output
    assert not (tmp_path / "out").exists()
