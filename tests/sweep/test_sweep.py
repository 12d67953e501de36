"""`resnext-deploy sweep` on two tiny models x two precisions: reuse, resume, gates, --compare-to, Ray."""

from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from tests.sweep.conftest import BACKEND, FLAGS, MODELS, PRECISIONS, copy_fp32_exports, sweep_options

CELLS = [f"{m}/{p}-{BACKEND}" for m in MODELS for p in PRECISIONS]
ACCURACY_KEYS = ("baseline_top1", "top1", "top1_delta_pp", "agreement", "cosine")


def _sweep(directory: Path) -> dict:
    return json.loads((directory / "sweep.json").read_text())


def _cells(directory: Path) -> dict[str, dict]:
    return {cell["cell"]: cell for cell in _sweep(directory)["cells"]}


def _report(directory: Path, cell: str) -> dict:
    return json.loads((directory / cell / "report.json").read_text())


def _text(result) -> str:  # type: ignore[no-untyped-def]
    """The command's output with rich's line wrapping undone."""
    return " ".join(result.output.split())


def _invoke(*args: object):  # type: ignore[no-untyped-def]
    from resnext_deploy.cli import app

    result = CliRunner().invoke(app, ["sweep", *map(str, args)])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def test_local_sweep_exports_fp32_once_per_model_and_reports_every_cell(local_sweep: Path) -> None:
    sweep = _sweep(local_sweep)
    assert [c["cell"] for c in sweep["cells"]] == CELLS
    assert all(c["status"] == "passed" for c in sweep["cells"]) and not sweep["failed_cells"]
    for model in MODELS:
        assert sweep["fp32"][model]["exported_now"] is True
        assert (local_sweep / model / "fp32" / "model.onnx").is_file()
    for cell in sweep["cells"]:
        report = _report(local_sweep, cell["cell"])
        fp32 = local_sweep / cell["model"] / "fp32" / "model.onnx"
        assert cell["fp32_reused_from"] == str(fp32)
        assert report["export"]["reused_from"] == str(fp32)
        assert (local_sweep / cell["directory"] / "model.onnx").samefile(fp32) or \
            (local_sweep / cell["directory"] / "model.onnx").read_bytes() == fp32.read_bytes()
        assert cell["compare"]["eval"] == sweep["cells"][0]["compare"]["eval"]  # one evaluation subset for all
        assert cell["evaluation"]["images"] == sweep["evaluation"]["count"] == 60
        assert cell["ran_on"]["latency"]["cpus"] == sweep["scheduler"]["latency_threads"]
        assert cell["p50_ms_b1"] > 0 and cell["images_per_s_b8"] > 0 and cell["size_bytes"] > 0
    int8 = [c for c in sweep["cells"] if c["precision"] == "int8"]
    assert all(c["size_bytes"] < 0.5 * _cells(local_sweep)[c["cell"].replace("int8", "fp32")]["size_bytes"] for c in int8)
    markdown = (local_sweep / "sweep.md").read_text()
    assert all(f"| {m} | {p} | {BACKEND} |" in markdown for m in MODELS for p in PRECISIONS)
    assert (local_sweep / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_pareto_front_holds_exactly_the_undominated_cells(local_sweep: Path) -> None:
    cells = _sweep(local_sweep)["cells"]
    front = set(_sweep(local_sweep)["pareto_front"])

    def dominated(c: dict) -> bool:
        return any(o["p50_ms_b1"] <= c["p50_ms_b1"] and o["top1"] >= c["top1"] and
                   (o["p50_ms_b1"], o["top1"]) != (c["p50_ms_b1"], c["top1"]) for o in cells)

    assert front and front == {c["cell"] for c in cells if not dominated(c)}


def test_ray_sweep_gives_the_local_numbers(local_sweep: Path, synthetic_imagenet, tiny_checkpoint, tmp_path: Path) -> None:
    ray = pytest.importorskip("ray")
    from resnext_deploy.sweep import run_sweep

    output = tmp_path / "ray"
    copy_fp32_exports(local_sweep, output)  # the same FP32 artifacts: a resumed sweep keeps them
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        outcome = run_sweep(sweep_options(output, synthetic_imagenet.root, tiny_checkpoint.checkpoint, ray="auto",
                                          shards=2), ["test"])
    finally:
        ray.shutdown()
    assert outcome, outcome.sweep["error_cells"]
    local, remote = _cells(local_sweep), _cells(output)
    for cell in CELLS:
        assert {k: remote[cell][k] for k in ACCURACY_KEYS} == {k: local[cell][k] for k in ACCURACY_KEYS}, cell
        assert remote[cell]["evaluation"]["count"] == 2 and local[cell]["evaluation"]["count"] == 1
        ran_on = remote[cell]["ran_on"]
        assert all("ray_node" in place for place in [ran_on["build"], ran_on["latency"], *ran_on["shards"]])
        assert ran_on["latency"]["cpus"] == 2
    sweep = _sweep(output)
    assert sweep["scheduler"]["kind"] == "ray" and sweep["scheduler"]["nodes"][0]["cpus"] == 2
    assert not any(model["exported_now"] for model in sweep["fp32"].values())


def test_resume_redoes_only_the_killed_cell(local_sweep: Path, synthetic_imagenet, tiny_checkpoint, tmp_path: Path) -> None:
    from resnext_deploy.sweep import run_sweep

    output = Path(shutil.copytree(local_sweep, tmp_path / "resumed"))
    killed = CELLS[1]
    report = _report(output, killed)  # killed after its build: artifacts there, never verified, a temp file left
    for key in ("verification", "gates", "sweep"):
        report.pop(key)
    (output / killed / "report.json").write_text(json.dumps(report))
    (output / killed / ".model.int8.onnx.x1y2.tmp").write_bytes(b"half")
    before = {cell: _report(output, cell)["verification"] for cell in CELLS if cell != killed}

    outcome = run_sweep(sweep_options(output, synthetic_imagenet.root, tiny_checkpoint.checkpoint, workers=2), ["test"])

    assert outcome
    cells, original = _cells(output), _cells(local_sweep)
    assert [cell for cell in CELLS if not cells[cell]["resumed"]] == [killed]
    assert {k: cells[killed][k] for k in ACCURACY_KEYS} == {k: original[killed][k] for k in ACCURACY_KEYS}
    assert not (output / killed / ".model.int8.onnx.x1y2.tmp").exists()
    assert all(_report(output, cell)["verification"] == verification for cell, verification in before.items())
    assert not any(model["exported_now"] for model in _sweep(output)["fp32"].values())
    assert cells[killed]["ran_on"]["build"]["pid"] != cells[CELLS[0]]["ran_on"]["build"]["pid"]  # a pool worker


def test_failing_gate_exits_1_after_every_cell_naming_the_cells(local_sweep: Path, synthetic_imagenet, tiny_checkpoint,
                                                                 tmp_path: Path) -> None:
    output = Path(shutil.copytree(local_sweep, tmp_path / "gated"))
    result = _invoke("--models", ",".join(MODELS), "--precisions", ",".join(PRECISIONS), "--backends", BACKEND,
                     "--weights", tiny_checkpoint.checkpoint, "--calib-data", synthetic_imagenet.root, *FLAGS,
                     "--output", output, "--workers", 1, "--max-top1-drop", 5, "--min-cosine", 0.99999,
                     "--junit", tmp_path / "junit.xml")
    assert result.exit_code == 1, result.output
    failing = [cell for cell in CELLS if "int8" in cell]
    assert f"{len(failing)} cell(s) failed their gates" in _text(result)
    assert all(f"{cell} (min_cosine)" in _text(result) for cell in failing)
    cells = _cells(output)
    assert all(cells[cell]["resumed"] for cell in CELLS)  # measured once; the new gate is checked on the kept numbers
    assert _sweep(output)["failed_cells"] == failing
    assert "min_cosine" in _report(output, failing[0])["gates"]["failed"]
    suites = {suite.get("name"): suite for suite in ET.parse(tmp_path / "junit.xml").getroot()}
    assert set(suites) == set(CELLS) and all(suites[c].get("failures") == ("1" if c in failing else "0") for c in CELLS)


def _gray_calibration_folder(root: Path) -> Path:
    """Flat grey pictures: a deliberately bad calibration set (activation ranges of nothing)."""
    from tests.support.synthetic import class_wnids

    folder = root / "gray" / class_wnids()[0]
    folder.mkdir(parents=True)
    for index in range(10):
        Image.new("RGB", (96, 80), (120 + index, 128, 128)).save(folder / f"gray_{index}.JPEG")
    return root / "gray"


def test_compare_to_catches_a_worsened_int8(local_sweep: Path, synthetic_imagenet, tiny_checkpoint, tmp_path: Path) -> None:
    output = tmp_path / "worse"
    copy_fp32_exports(local_sweep, output, MODELS[:1])
    result = _invoke("--models", MODELS[0], "--precisions", "int8", "--backends", BACKEND,
                     "--weights", tiny_checkpoint.checkpoint, "--calib-data", _gray_calibration_folder(tmp_path),
                     "--eval-data", synthetic_imagenet.root, *FLAGS, "--output", output, "--workers", 1,
                     "--max-top1-drop", 100, "--max-latency-growth", 100, "--compare-to", local_sweep / "sweep.json")
    assert result.exit_code == 1, result.output
    cell = f"{MODELS[0]}/int8-{BACKEND}"
    assert f"{cell} (max_top1_regression)" in _text(result)
    gates = {g["name"]: g for g in _cells(output)[cell]["gates"]}
    assert gates["max_top1_drop"]["status"] == "passed"  # still passes against its own FP32
    regression = gates["max_top1_regression"]
    assert regression["status"] == "failed" and regression["measured"] > 10
    assert regression["reason"] == f"vs {local_sweep / 'sweep.json'} [{cell}]"
    assert regression["measured"] == pytest.approx(_cells(local_sweep)[cell]["top1"] - _cells(output)[cell]["top1"])


def test_verify_compare_to_an_earlier_report(local_sweep: Path, synthetic_imagenet, tmp_path: Path) -> None:
    from resnext_deploy.cli import app

    cell = f"{MODELS[0]}/int8-{BACKEND}"
    directory = Path(shutil.copytree(local_sweep / cell, tmp_path / "int8"))
    earlier = json.loads((directory / "report.json").read_text())
    earlier["verification"]["accuracy"]["target_top1"] += 10.0  # yesterday's INT8 was ten points better
    (tmp_path / "earlier.json").write_text(json.dumps(earlier))
    result = CliRunner().invoke(app, ["verify", str(directory), "--eval-data", str(synthetic_imagenet.root),
                                      "--eval-size", "60", "--no-latency", "--max-top1-drop", "5",
                                      "--compare-to", str(tmp_path / "earlier.json")])
    assert result.exit_code == 1, result.output
    gates = {g["name"]: g for g in json.loads((directory / "report.json").read_text())["gates"]["results"]}
    assert gates["max_top1_regression"]["status"] == "failed"
    assert gates["max_top1_regression"]["measured"] == pytest.approx(10.0)
    assert gates["max_latency_growth"]["status"] == "skipped"
    assert gates["max_top1_drop"]["status"] == "passed"


def test_sharded_evaluation_gives_the_numbers_of_one_process(local_sweep: Path, synthetic_imagenet, tmp_path: Path) -> None:
    import dataclasses

    from resnext_deploy.verification import VerifyOptions, verify_directory
    from resnext_deploy.verification.accuracy import load_eval_set
    from resnext_deploy.verification.shards import EvalLogits, eval_shard, shard_bounds
    from resnext_deploy.zoo import get_model_spec

    directory = Path(shutil.copytree(local_sweep / f"{MODELS[1]}/int8-{BACKEND}", tmp_path / "int8"))
    options = VerifyOptions(eval_data=synthetic_imagenet.root, eval_size=60, eval_batch_size=16, latency=False)
    whole = verify_directory(directory, options).report.verification.accuracy  # every core, one process
    records = load_eval_set(synthetic_imagenet.root, None, 60, 0, get_model_spec(MODELS[1]).preprocess, None, 32).records
    bounds = shard_bounds(len(records), 16, 3)
    shards = [eval_shard(directory, records[a:b], index, 16, threads=1) for index, (a, b) in enumerate(bounds)]
    sharded = verify_directory(directory, dataclasses.replace(options), EvalLogits(shards[::-1])).report.verification
    assert len(bounds) == 3 and sharded.accuracy == whole
    assert [s["images"] for s in sharded.eval_data["shards"]["shards"]] == [b - a for a, b in bounds]
