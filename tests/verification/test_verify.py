"""`resnext-deploy verify` on the tiny trained model: gates pass, fail, skip; reports, JUnit, bad input."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import onnx
import pytest
import typer
from onnx import numpy_helper
from typer.testing import CliRunner

pytestmark = pytest.mark.slow
FAST = ["--batch-sizes", "1,4", "--iterations", "2", "--duration", "0", "--warmup-ms", "0", "--eval-size", "100"]


@pytest.fixture(scope="module")
def app() -> typer.Typer:
    from resnext_deploy.cli import app

    return app


def _invoke(app: typer.Typer, *args: object):  # type: ignore[no-untyped-def]
    result = CliRunner().invoke(app, ["verify", *map(str, args)])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def _report(directory: Path) -> dict:
    return json.loads((directory / "report.json").read_text())


def _junit(path: Path) -> ET.Element:
    suite = ET.parse(path).getroot().find("testsuite")
    assert suite is not None and suite.get("name") == "resnext-deploy gates"
    return suite


def test_correct_int8_passes_a_one_point_gate(app, export_dir: Path, synthetic_imagenet, tmp_path: Path) -> None:
    junit = tmp_path / "gates.xml"
    result = _invoke(app, export_dir, "--eval-data", synthetic_imagenet.val, "--max-top1-drop", 1.0,
                     "--min-cosine", 0.99, "--junit", junit, *FAST)
    assert result.exit_code == 0, result.output
    report = _report(export_dir)
    accuracy = report["verification"]["accuracy"]
    assert accuracy["accuracy_measured"] is True and accuracy["images"] == 100
    assert accuracy["top1_drop_pp"] <= 1.0 and accuracy["mean_cosine"] > 0.99 and accuracy["sqnr_db"] > 15
    assert report["verification"]["eval_data"]["checked_disjoint_from"].endswith("manifest.json")
    assert set(report["verification"]["latency"]["per_batch"]) == {"1", "4"}
    assert report["verification"]["latency"]["per_batch"]["4"]["target"]["iterations"] == 2
    assert report["gates"]["passed"] is True
    assert {g["name"] for g in report["gates"]["results"]} == {"max_top1_drop", "min_cosine"}
    markdown = (export_dir / "report.md").read_text()
    assert "| metric | baseline | target | delta |" in markdown and "✅" in markdown and "❌" not in markdown
    # the FP32 baseline ran on ONNX Runtime's CPU provider (the default), and the report and summary say so
    baseline = report["verification"]["baseline"]
    assert baseline["requested_providers"] == ["CPUExecutionProvider"] and baseline["providers"] == ["CPUExecutionProvider"]
    assert "| baseline | onnx on onnxruntime (CPUExecutionProvider) |" in markdown
    assert "vs onnx baseline (CPUExecutionProvider)" in " ".join(result.output.split())
    suite = _junit(junit)
    assert suite.get("tests") == "2" and suite.get("failures") == "0"
    assert (export_dir / "latency.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _damage_weight_scales(directory: Path) -> None:
    """Multiply the scale of every weight DequantizeLinear by 8: a badly broken INT8 artifact."""
    path = directory / "model.int8.onnx"
    model = onnx.load(path)
    inits = {i.name: i for i in model.graph.initializer}
    damaged = 0
    for node in model.graph.node:
        if node.op_type == "DequantizeLinear" and node.input[0] in inits and node.input[1] in inits:
            scale = inits[node.input[1]]
            scale.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(scale) * np.float32(8), scale.name))
            damaged += 1
    assert damaged > 0
    onnx.save(model, path)
    # as if the export itself had written this bad artifact: report.json records its checksum
    from resnext_deploy.outdir import record_checksums
    from resnext_deploy.report import read_report, write_report

    report = read_report(directory)
    record_checksums(directory, report)
    write_report(directory, report)


def test_damaged_int8_fails_with_exit_1_naming_the_gate(app, export_dir: Path, synthetic_imagenet, tmp_path: Path) -> None:
    _damage_weight_scales(export_dir)
    junit = tmp_path / "gates.xml"
    result = _invoke(app, export_dir, "--eval-data", synthetic_imagenet.val, "--max-top1-drop", 1.0,
                     "--min-agreement", 0.9, "--junit", junit, *FAST)
    assert result.exit_code == 1, result.output
    output = " ".join(result.output.split())
    assert "max_top1_drop" in output and "gate(s) failed" in output
    report = _report(export_dir)
    assert report["gates"]["passed"] is False
    assert set(report["gates"]["failed"]) == {"max_top1_drop", "min_agreement"}
    failed = next(g for g in report["gates"]["results"] if g["name"] == "max_top1_drop")
    assert failed["measured"] > 1.0 and failed["margin"] < 0 and failed["passed"] is False
    suite = _junit(junit)
    failures = {case.get("name"): case.find("failure") for case in suite.iter("testcase")}
    assert failures["max_top1_drop"] is not None and "max_top1_drop" in failures["max_top1_drop"].get("message")
    assert "❌" in (export_dir / "report.md").read_text()


def test_unlabelled_data_reports_agreement_and_skips_top1_gate(app, export_dir: Path, unlabelled_folder: Path, tmp_path: Path) -> None:
    junit = tmp_path / "gates.xml"
    result = _invoke(app, export_dir, "--eval-data", unlabelled_folder, "--no-latency", "--junit", junit)
    assert result.exit_code == 0, result.output
    report = _report(export_dir)
    accuracy = report["verification"]["accuracy"]
    assert accuracy["accuracy_measured"] is False and accuracy["target_top1"] is None
    assert 0.0 <= accuracy["top1_agreement"] <= 1.0 and accuracy["images"] == 30
    assert any("not measured" in note for note in report["verification"]["notes"])
    gate = report["gates"]["results"][0]
    assert gate["name"] == "max_top1_drop" and gate["status"] == "skipped" and "no labels" in gate["reason"]
    assert report["gates"]["skipped"] == ["max_top1_drop"] and report["verification"]["latency"] is None
    case = next(_junit(junit).iter("testcase"))
    assert case.find("skipped") is not None


def test_gates_file_with_model_override_and_flag_precedence(app, export_dir: Path, synthetic_imagenet, tmp_path: Path) -> None:
    gates = tmp_path / "gates.toml"
    gates.write_text(
        "[defaults]\nmin_agreement = 1.5\nmax_top1_drop = 0.0\n\n"
        "[models.resnext_tiny.int8]\nmin_agreement = 0.5\nmax_top1_drop = 5.0\n"
    )
    common = ["--eval-data", synthetic_imagenet.val, "--gates", gates, "--no-latency", "--eval-size", 60]
    result = _invoke(app, export_dir, *common)
    assert result.exit_code == 0, result.output
    report = _report(export_dir)
    thresholds = report["gates"]["thresholds"]
    assert thresholds == {"max_top1_drop": 5.0, "min_agreement": 0.5}
    assert report["gates"]["sources"]["min_agreement"] == "gates.toml [models.resnext_tiny.int8]"
    result = _invoke(app, export_dir, *common, "--min-agreement", 1.5)
    assert result.exit_code == 1 and "min_agreement" in result.output
    assert _report(export_dir)["gates"]["sources"]["min_agreement"] == "flag"


def test_eval_overlapping_calibration_is_bad_input(app, export_dir: Path, synthetic_imagenet) -> None:
    result = _invoke(app, export_dir, "--eval-data", synthetic_imagenet.train, "--eval-size", 100000, "--no-latency")
    assert result.exit_code == 2
    assert "calibration images" in " ".join(result.output.split())
    assert "verification" not in _report(export_dir)


def test_a_baseline_provider_asked_for_is_tried_and_the_one_that_ran_is_recorded(app, export_dir: Path) -> None:
    import onnxruntime

    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        pytest.skip("this onnxruntime build has no CUDA provider to ask for")
    from resnext_deploy.engines.cuda import has_cuda_device

    result = _invoke(app, export_dir, "--baseline-provider", "CUDAExecutionProvider,CPUExecutionProvider",
                     "--no-latency", "--eval-size", 8)
    assert result.exit_code == 0, result.output
    baseline = _report(export_dir)["verification"]["baseline"]
    assert baseline["requested_providers"] == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    if not has_cuda_device():  # ONNX Runtime fell back to the CPU, and the report names what really ran
        assert baseline["providers"] == ["CPUExecutionProvider"]


def test_no_eval_data_uses_random_inputs_and_torch_baseline(export_dir: Path) -> None:
    from resnext_deploy.verification import VerifyOptions, verify_directory

    outcome = verify_directory(export_dir, VerifyOptions(baseline="torch", iterations=1, duration=0, warmup_ms=0, batch_sizes=(2,), progress=False))
    ver = outcome.report.verification
    assert ver.eval_data["kind"] == "random" and ver.baseline["kind"] == "torch"
    assert any("NO EVALUATION DATA" in note for note in ver.notes)
    assert ver.accuracy["mean_cosine"] > 0.9
    assert outcome.gates[0].status == "skipped" and bool(outcome)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--batch-sizes", "0,8"], "bad batch sizes"),
        (["--gates", "BAD_TOML"], "not valid TOML"),
        (["--gates", "UNKNOWN_GATE"], "unknown gate"),
        (["--baseline-provider", "NoSuchExecutionProvider"], "has no execution provider NoSuchExecutionProvider"),
        (["--baseline-provider", "auto,CPUExecutionProvider"], "bad provider list"),
    ],
)
def test_bad_options_exit_2(app, int8_export_dir: Path, tmp_path: Path, extra: list[str], message: str) -> None:
    (tmp_path / "bad.toml").write_text("[defaults\nmax_top1_drop = 1\n")
    (tmp_path / "unknown.toml").write_text("[defaults]\nmax_top1_dorp = 1\n")
    extra = [{"BAD_TOML": tmp_path / "bad.toml", "UNKNOWN_GATE": tmp_path / "unknown.toml"}.get(e, e) for e in extra]
    result = _invoke(app, int8_export_dir, *extra)
    assert result.exit_code == 2 and message in " ".join(result.output.split())


def test_batch_by_batch_evaluation_matches_one_batch(export_dir: Path, synthetic_imagenet) -> None:
    """Images are decoded and run in batches (memory stays flat); the batch size changes no number."""
    from resnext_deploy.verification import VerifyOptions, verify_directory

    def accuracy(batch_size: int) -> dict:
        options = VerifyOptions(eval_data=synthetic_imagenet.val, eval_size=60, latency=False, plot=False,
                                progress=False, eval_batch_size=batch_size)
        return verify_directory(export_dir, options).report.verification.accuracy

    small, large = accuracy(7), accuracy(64)
    assert small["images"] == large["images"] == 60
    for key in ("baseline_top1", "target_top1", "top1_agreement"):
        assert small[key] == large[key]
    assert small["mean_cosine"] == pytest.approx(large["mean_cosine"], abs=1e-6)


def test_bare_int8_onnx_verifies_against_the_model_onnx_beside_it(app, export_dir: Path, synthetic_imagenet,
                                                                   tmp_path: Path) -> None:
    out = tmp_path / "bare"
    result = _invoke(app, export_dir / "model.int8.onnx", "--eval-data", synthetic_imagenet.val, "--no-latency",
                     "--eval-size", 60, "--max-top1-drop", 5, "--output", out)
    assert result.exit_code == 0, result.output
    report = _report(out)
    assert report["precision"] == "int8" and report["source"]["kind"] == "onnx"
    assert report["verification"]["accuracy"]["images"] == 60
    assert any("model.onnx beside the artifact" in note for note in report["verification"]["notes"])
    assert report["verification"]["eval_data"]["checked_disjoint_from"]  # the export's calibration manifest was found
    before = _report(export_dir)["created"]
    assert _report(export_dir)["created"] == before  # the export's own report is untouched


def test_bare_onnx_without_reference_or_model_metadata_is_bad_input(app, export_dir: Path, tmp_path: Path) -> None:
    import shutil

    lonely = tmp_path / "lonely"
    lonely.mkdir()
    shutil.copyfile(export_dir / "model.int8.onnx", lonely / "model.int8.onnx")
    result = _invoke(app, lonely / "model.int8.onnx", "--no-latency")
    assert result.exit_code == 2 and "--reference" in result.output
    proto = onnx.load(str(export_dir / "model.onnx"))
    del proto.metadata_props[:]
    onnx.save(proto, str(lonely / "foreign.onnx"))
    result = _invoke(app, lonely / "foreign.onnx", "--no-latency")
    assert result.exit_code == 2 and "--model" in result.output


def test_bare_fp32_onnx_is_compared_with_its_reference_not_itself(app, export_dir: Path, synthetic_imagenet,
                                                                  tmp_path: Path) -> None:
    """An FP32 artifact X with `--reference REF`: the baseline runs REF (a perturbed copy of REF differs from it)."""
    proto = onnx.load(str(export_dir / "model.onnx"))
    weights = max(proto.graph.initializer, key=lambda t: int(np.prod(t.dims)))
    values = numpy_helper.to_array(weights)
    noisy = values + np.random.default_rng(0).normal(0, float(values.std()), values.shape).astype(values.dtype)
    weights.CopyFrom(numpy_helper.from_array(noisy, weights.name))
    artifact = tmp_path / "perturbed" / "model.onnx"
    artifact.parent.mkdir()
    onnx.save(proto, str(artifact))
    out = tmp_path / "bare"
    result = _invoke(app, artifact, "--reference", export_dir / "model.onnx", "--eval-data", synthetic_imagenet.val,
                     "--no-latency", "--eval-size", 40, "--min-cosine", 0.5, "--output", out)
    assert result.exit_code in (0, 1), result.output
    report = _report(out)
    assert report["source"]["reference"] == str((export_dir / "model.onnx").resolve())
    accuracy = report["verification"]["accuracy"]
    assert accuracy["mean_cosine"] < 0.999  # X against itself would give 1.0 (the bug)
    assert report["verification"]["baseline"]["artifact"] == str((export_dir / "model.onnx").resolve())
