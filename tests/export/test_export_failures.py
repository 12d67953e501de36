"""Hardening of the export path, through the CLI: exit codes, checks before heavy work, signals, the output
directory's lock, staging and --force, artifacts checked against report.json, skipped gates, NaN weights."""

from __future__ import annotations

import errno
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from resnext_deploy.cli import app
from resnext_deploy.errors import EXIT_INTERNAL

runner = CliRunner()
FAST_VERIFY = ["--batch-sizes", "1", "--no-latency", "--eval-size", "20"]


def invoke(*args: object):  # type: ignore[no-untyped-def]
    return runner.invoke(app, [str(a) for a in args])


def _clean(result) -> str:  # type: ignore[no-untyped-def]
    assert "Traceback" not in result.output, result.output
    return " ".join(result.output.split())


@pytest.fixture(scope="module")
def tiny_weights(tiny_spec, tmp_path_factory) -> Path:  # type: ignore[no-untyped-def]
    from resnext_deploy.exporters.models import build_model

    path = tmp_path_factory.mktemp("weights") / "tiny.pth"
    torch.save(build_model(tiny_spec, "random")[0].state_dict(), path)
    return path


@pytest.fixture
def private_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The system temporary folder, made private to the test, so leaks can be counted."""
    folder = tmp_path / "systmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


# --- item 9: every model-free check runs before any heavy work and writes nothing ---------------------------

def test_bad_commands_fail_before_any_work_and_leave_nothing(tiny_spec, tiny_weights, synthetic_imagenet, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    out = tmp_path / "out"
    manifest = tmp_path / "manifest.json"
    from resnext_deploy.data.datasets import scan_images
    from resnext_deploy.data.manifest import Manifest

    records = scan_images(synthetic_imagenet.train).records[:4]
    Manifest.from_records(records, root=synthetic_imagenet.train, layout="imagefolder", seed=0).write(manifest)
    int8 = ["-p", "int8", "-w", tiny_weights, "--calib-size", "20", "-o", out]
    cases = [
        (["--opset", "99"], "--opset 99 is newer than the dynamo exporter supports"),
        (["-p", "int8", "--calib-data", empty], "no images"),
        ([*int8, "--calib-data", synthetic_imagenet.messy, "--strict"], "corrupt.JPEG"),
        ([*int8, "--calib-data", synthetic_imagenet.val, "--calib-manifest", manifest], "differ from the manifest"),
        ([*int8, "--calib-data", synthetic_imagenet.train, "--eval-data", synthetic_imagenet.train], "also calibration images"),
        (["--min-batch", "8", "--opt-batch", "4"], "batch range"),
        (["--junit", tmp_path], "is a folder"),
        (["--gates", manifest], "not valid TOML"),
    ]
    for extra, message in cases:
        result = invoke("export", "resnext_tiny", "-w", tiny_weights, "-o", out, *extra)
        assert result.exit_code == 2, (extra, result.output)
        assert message in _clean(result), (extra, result.output)
        assert not out.exists(), f"{extra} wrote {out}"


def test_max_opsets_are_the_exporters_own():
    from torch.onnx import _constants

    from resnext_deploy.exporters.onnx_export import MAX_OPSETS

    assert MAX_OPSETS == {"dynamo": _constants.ONNX_MAX_OPSET,
                          "torchscript": _constants.ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET}


# --- item 10: exit codes ---------------------------------------------------------------------------------

@pytest.mark.slow  # a whole FP32 export before the write fails
def test_no_space_left_while_writing_model_onnx_exits_2(tiny_spec, tiny_weights, tmp_path, monkeypatch):
    import builtins

    real_open = builtins.open

    class FullDisk(io.RawIOBase):
        def writable(self) -> bool:
            return True

        def write(self, data) -> int:  # type: ignore[no-untyped-def]
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), self.name)

    def open_on_a_full_disk(file, mode="r", *args, **kwargs):  # type: ignore[no-untyped-def]
        if "w" in mode and Path(str(file)).name.startswith(".model.onnx."):
            disk = FullDisk()
            disk.name = str(file)
            return disk
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", open_on_a_full_disk)
    out = tmp_path / "out"
    result = invoke("export", "resnext_tiny", "-w", tiny_weights, "-o", out, "--no-engine")
    assert result.exit_code == 2, result.output
    text = _clean(result)
    assert "No space left on device" in text and "hint:" in text and "truncated" not in text
    assert not out.exists() or not any(out.iterdir())


def test_internal_error_exits_3_with_one_line_and_traceback_only_with_v(tiny_spec, tiny_weights, tmp_path, monkeypatch):
    import onnxsim

    def broken(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise KeyError("an unexpected bug")

    monkeypatch.setattr("resnext_deploy.exporters.export.fold_batchnorm", broken)
    quiet = invoke("export", "resnext_tiny", "-w", tiny_weights, "-o", tmp_path / "a", "--no-engine")
    assert quiet.exit_code == EXIT_INTERNAL == 3
    assert "internal error: KeyError" in quiet.output and "-v" in quiet.output and "Traceback" not in quiet.output
    verbose = runner.invoke(app, ["-v", "export", "resnext_tiny", "-w", str(tiny_weights), "-o", str(tmp_path / "b"), "--no-engine"])
    assert verbose.exit_code == 3 and "Traceback" in verbose.output
    assert onnxsim  # imported so the patched module is the one the export uses


def test_non_utf8_labels_file_exits_2(tiny_spec, tiny_weights, synthetic_imagenet, tmp_path):
    labels = tmp_path / "labels.txt"
    labels.write_bytes("ILSVRC2012_val_00000001.JPEG caf\xe9\n".encode("latin-1"))
    result = invoke("export", "resnext_tiny", "-w", tiny_weights, "-o", tmp_path / "o",
                    "--eval-data", synthetic_imagenet.flat_text.folder, "--eval-labels", labels)
    assert result.exit_code == 2 and "not UTF-8" in _clean(result)


def test_nan_weights_are_named_as_such(tiny_spec, tiny_weights, tmp_path):
    state = torch.load(tiny_weights)
    state["fc.weight"][0, 0] = float("nan")
    torch.save(state, tmp_path / "nan.pth")
    result = invoke("export", "resnext_tiny", "-w", tmp_path / "nan.pth", "-o", tmp_path / "o", "--no-engine")
    assert result.exit_code == 2
    text = _clean(result)
    assert "contain NaN" in text and "fc.weight" in text and "bug" not in text


# --- item 11: SIGTERM, staging ------------------------------------------------------------------------------

def test_sigterm_during_calibration_exits_143_with_one_line_and_leaves_nothing(
    random_fp32_export_dir, synthetic_imagenet, tmp_path, private_tmp, monkeypatch
):
    import onnxruntime.quantization as ortq

    real = ortq.create_calibrator

    def terminated_meanwhile(*args, **kwargs):  # type: ignore[no-untyped-def]
        calibrator = real(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGTERM)  # what a CI timeout sends
        return calibrator

    monkeypatch.setattr(ortq, "create_calibrator", terminated_meanwhile)
    previous = signal.getsignal(signal.SIGTERM)
    out = tmp_path / "out"
    fp32 = random_fp32_export_dir / "model.onnx"  # calibration is the point: the FP32 model is reused, not exported
    result = invoke("export", "resnext_tiny", "-p", "int8", "--fp32-from", fp32, "--calib-data", synthetic_imagenet.train,
                    "--calib-size", "20", "--cache-dir", tmp_path / "cache", "-o", out, "--no-engine")
    assert result.exit_code == 143, result.output
    assert "interrupted (SIGTERM)" in _clean(result)
    assert list(private_tmp.iterdir()) == [], "temporary work left in the system temp folder"
    assert not out.exists(), "a failed first run leaves no output directory"
    assert signal.getsignal(signal.SIGTERM) == previous


@pytest.mark.slow  # a whole FP32 export
def test_leftovers_of_a_killed_run_are_removed_at_the_next_start(tiny_spec, tiny_weights, tmp_path, private_tmp):
    out = tmp_path / "out"
    (out / ".resnext-staging" / "export").mkdir(parents=True)
    (out / ".resnext-staging" / "export" / "model.onnx").write_bytes(b"half written")
    (out / ".model.onnx.k1ll3d.tmp").write_bytes(b"x" * 1000)
    result = invoke("export", "resnext_tiny", "-w", tiny_weights, "-o", out, "--no-engine")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["model.onnx", "report.json"]
    assert list(private_tmp.iterdir()) == []


def test_a_refused_start_removes_a_killed_runs_staging_but_not_a_live_ones(random_int8_export_dir, tiny_weights, tmp_path):
    out = Path(shutil.copytree(random_int8_export_dir, tmp_path / "export"))
    holder = subprocess.Popen(  # a `--force` run that holds the lock and has half-built files in its staging folder
        [sys.executable, "-c", textwrap.dedent(f"""
            import time
            from pathlib import Path
            from resnext_deploy.outdir import locked, reset_staging
            with locked(Path({str(out)!r}), ["resnext-deploy", "export", "--force"]):
                (reset_staging(Path({str(out)!r})) / "model.int8.onnx").write_bytes(b"x" * 100_000)
                print("staged", flush=True)
                time.sleep(60)
        """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "staged"
        live = invoke("export", "resnext_tiny", "-w", tiny_weights, "-o", out, "--no-engine")
        assert live.exit_code == 2 and (out / ".resnext-staging" / "model.int8.onnx").is_file()  # the live run's own
    finally:
        holder.kill()  # SIGKILL: no clean-up of its own
        holder.wait()
    refused = invoke("export", "resnext_tiny", "-w", tiny_weights, "-o", out, "--no-engine")
    assert refused.exit_code == 2 and "already holds" in _clean(refused) and "--force" in _clean(refused)
    assert not (out / ".resnext-staging").exists() and not (out / ".resnext.lock").exists()
    assert (out / "model.int8.onnx").is_file()  # the earlier export itself is untouched


# --- item 12: lock -----------------------------------------------------------------------------------------

def test_a_second_run_on_a_busy_output_directory_is_refused_naming_the_holder(tiny_spec, tiny_weights, tmp_path):
    out = tmp_path / "busy"
    out.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys, time
            from pathlib import Path
            from resnext_deploy.outdir import locked
            with locked(Path({str(out)!r}), ["resnext-deploy", "export", "the-first-one"]):
                print("locked", flush=True)
                time.sleep(60)
        """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        result = invoke("export", "resnext_tiny", "-w", tiny_weights, "-o", out, "--no-engine")
        assert result.exit_code == 2
        text = _clean(result)
        assert f"pid {holder.pid}" in text and "the-first-one" in text and "in use" in text
    finally:
        holder.kill()
        holder.wait()
    from resnext_deploy.outdir import locked

    with locked(out):  # the kernel released the lock of the killed holder: no stale lock
        pass
    assert not (out / ".resnext.lock").exists()


# --- items 6, 7, 8: --force, artifacts checked against report.json, paths inside the directory ------------------

@pytest.fixture
def int8_copy(random_int8_export_dir: Path, tmp_path: Path) -> Path:
    """A private copy of an INT8 export of random weights (what these tests check does not depend on accuracy)."""
    return Path(shutil.copytree(random_int8_export_dir, tmp_path / "export"))


def test_force_over_another_precision_leaves_only_this_runs_files(int8_copy: Path, random_fp32_export_dir, tmp_path):
    (int8_copy / "notes.txt").write_text("mine")
    before = {p.name for p in int8_copy.iterdir()}
    assert {"model.int8.onnx", "calibration"} <= before
    result = invoke("export", "resnext_tiny", "--fp32-from", random_fp32_export_dir / "model.onnx", "-o", int8_copy,
                    "--force", "--no-verify")
    assert result.exit_code == 0, result.output
    report = json.loads((int8_copy / "report.json").read_text())
    assert report["precision"] == "fp32" and "int8" not in report["artifacts"]
    assert sorted(p.name for p in int8_copy.iterdir()) == sorted(
        ["model.onnx", "model.ort-opt.onnx", "model.onnxruntime.json", "report.json", "notes.txt"])
    assert report["engine"]["artifact"]["path"] == "model.ort-opt.onnx"  # relative: the directory may move
    bundle = invoke("package", int8_copy, "-o", tmp_path / "b.tar.gz")
    assert bundle.exit_code == 0, bundle.output
    import tarfile

    with tarfile.open(tmp_path / "b.tar.gz") as tar:
        names = tar.getnames()
    assert "model.int8.onnx" not in names and not any(n.startswith("calibration") for n in names)


def test_a_failed_force_run_keeps_the_earlier_export(int8_copy: Path, tiny_weights, tmp_path):
    state = torch.load(tiny_weights)
    state["fc.bias"][0] = float("inf")
    torch.save(state, tmp_path / "inf.pth")
    before = {p.name: p.stat().st_mtime_ns for p in int8_copy.iterdir()}
    result = invoke("export", "resnext_tiny", "-w", tmp_path / "inf.pth", "-o", int8_copy, "--force")
    assert result.exit_code == 2 and "infinity" in _clean(result)
    assert {p.name: p.stat().st_mtime_ns for p in int8_copy.iterdir()} == before


def test_swapped_artifacts_are_refused_by_verify_and_package(int8_copy: Path, tmp_path):
    fp32, int8 = int8_copy / "model.onnx", int8_copy / "model.int8.onnx"
    swap = tmp_path / "swap"
    os.replace(fp32, swap)
    os.replace(int8, fp32)
    os.replace(swap, int8)
    for result in (invoke("verify", int8_copy, *FAST_VERIFY), invoke("package", int8_copy, "-o", tmp_path / "b.tar.gz")):
        assert result.exit_code == 2, result.output
        assert "is not the file this export wrote" in _clean(result)
    report = json.loads((int8_copy / "report.json").read_text())
    report.pop("checksums")  # an export of an older release: the metadata still tells the precisions apart
    (int8_copy / "report.json").write_text(json.dumps(report))
    result = invoke("package", int8_copy, "-o", tmp_path / "b.tar.gz")
    assert result.exit_code == 2 and "holds a int8 model" in _clean(result)


@pytest.mark.parametrize("name", ["../outside.onnx", "/etc/hostname", "link.onnx"])
def test_report_paths_leading_outside_are_refused_before_reading(int8_copy: Path, tmp_path, name: str):
    (tmp_path / "outside.onnx").write_bytes(b"not read")
    (int8_copy / "link.onnx").symlink_to(tmp_path / "outside.onnx")
    report = json.loads((int8_copy / "report.json").read_text())
    report["artifacts"]["int8"] = name
    (int8_copy / "report.json").write_text(json.dumps(report))
    result = invoke("verify", int8_copy, *FAST_VERIFY)
    assert result.exit_code == 2 and "refused" in _clean(result)


# --- items 15, 16: labels coverage, skipped gates --------------------------------------------------------------

def test_labels_covering_few_images_fail_unless_allowed(export_dir: Path, synthetic_imagenet, tmp_path):
    int8_copy = export_dir  # the trained model's INT8 export (a private copy): top-1 on 5 labelled images passes
    flat = synthetic_imagenet.flat_text
    labels = tmp_path / "few.txt"
    labels.write_text("".join(line + "\n" for line in flat.labels_file.read_text().splitlines()[:5]))
    args = ["verify", int8_copy, "--eval-data", flat.folder, "--eval-labels", labels, *FAST_VERIFY]
    refused = invoke(*args)
    assert refused.exit_code == 2 and "labels only 5 of the 30 images" in _clean(refused)
    allowed = invoke(*args, "--allow-partial-labels")
    assert allowed.exit_code == 0, allowed.output
    eval_data = json.loads((int8_copy / "report.json").read_text())["verification"]["eval_data"]
    assert eval_data["count"] == 5 and eval_data["label_coverage"] == {"labelled": 5, "images": 30}


def test_a_skipped_gate_is_loud_and_fails_with_require_gates(int8_copy: Path, tmp_path):
    junit = tmp_path / "junit.xml"
    skipped = invoke("verify", int8_copy, "--max-top1-drop", "0.5", *FAST_VERIFY)
    assert skipped.exit_code == 0, skipped.output
    assert "gate max_top1_drop was SKIPPED" in _clean(skipped)
    required = invoke("verify", int8_copy, "--max-top1-drop", "0.5", "--require-gates", "--junit", junit, *FAST_VERIFY)
    assert required.exit_code == 1, required.output
    assert "--require-gates" in _clean(required)
    report = json.loads((int8_copy / "report.json").read_text())
    assert report["gates"]["passed"] is False and report["gates"]["required"] is True
    assert 'type="GateSkipped"' in junit.read_text()
