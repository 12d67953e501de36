"""Hostile inputs that used to crash (exit 3) exit 2 with a hint, before any evaluation or export: a bare ONNX
file's metadata_props of the wrong types, values, sizes or nesting, and --compare-to files of the wrong shape."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import onnx
import pytest
from typer.testing import CliRunner

from resnext_deploy.metadata import MAX_PROP_CHARS

runner = CliRunner()
DEEP = "[" * 200_000 + "]" * 200_000
MAX_OUTPUT = 6000  # an error quotes a shortened value, never the whole hostile field


def _invoke(*args: object):  # type: ignore[no-untyped-def]
    from resnext_deploy.cli import app

    result = runner.invoke(app, [str(a) for a in args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def _text(result) -> str:  # type: ignore[no-untyped-def]
    return " ".join(result.output.split())


def _with_prop(source: Path, target: Path, key: str, value: str) -> Path:
    proto = onnx.load(str(source))
    props = {prop.key: prop for prop in proto.metadata_props}
    if key in props:
        props[key].value = value
    else:
        prop = proto.metadata_props.add()
        prop.key, prop.value = key, value
    target.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(proto, str(target))
    return target


def _preprocess(**changes: object) -> str:
    base = {"input_size": 32, "crop_pct": 0.875, "interpolation": "bicubic", "mean": [0.485, 0.456, 0.406],
            "std": [0.229, 0.224, 0.225]}
    return json.dumps(base | changes)


METADATA = [
    ("preprocess-string", "model.onnx", "preprocess", '"a string"', "preprocess"),
    ("negative-input-size", "model.onnx", "preprocess", _preprocess(input_size=-224), "preprocess.input_size"),
    ("weights-string", "model.onnx", "weights", '"a string"', "weights"),
    ("nan-mean", "model.onnx", "preprocess", _preprocess(mean=[float("nan"), 0.4, 0.4]), "preprocess.mean"),
    ("nan-std", "model.onnx", "preprocess", _preprocess(std=[0.2, 0.2, float("nan")]), "preprocess.std"),
    ("num-classes-string", "model.onnx", "num_classes", '"ten"', "num_classes"),
    ("wrong-precision-claim", "model.int8.onnx", "precision", '"fp32"', "says precision fp32, but its graph is int8"),
    ("long-model-name", "model.onnx", "model_name", json.dumps("x" * 600), "model_name"),
    ("huge-model-name", "model.onnx", "model_name", json.dumps("x" * (MAX_PROP_CHARS + 1)), "characters, more than"),
    ("deep-json", "model.onnx", "model_name", DEEP, "nested too deeply"),
]


@pytest.mark.parametrize(("artifact", "key", "value", "message"), [m[1:] for m in METADATA], ids=[m[0] for m in METADATA])
def test_hostile_bare_onnx_metadata_exits_2_with_a_hint(random_int8_export_dir: Path, synthetic_imagenet, tmp_path: Path,
                                                        artifact: str, key: str, value: str, message: str) -> None:
    bare = _with_prop(random_int8_export_dir / artifact, tmp_path / "bare" / artifact, key, value)
    if artifact != "model.onnx":
        shutil.copyfile(random_int8_export_dir / "model.onnx", bare.with_name("model.onnx"))
    result = _invoke("verify", bare, "--eval-data", synthetic_imagenet.val, "--no-latency", "--eval-size", 20)
    assert result.exit_code == 2, result.output
    assert message in _text(result) and "hint:" in result.output and "Traceback" not in result.output
    assert len(result.output) < MAX_OUTPUT


@pytest.mark.parametrize(("key", "value"), [("preprocess", DEEP), ("model_name", json.dumps("x" * (MAX_PROP_CHARS + 1))),
                                            ("precision", '"int4"')])
def test_build_of_a_bare_onnx_with_hostile_metadata_exits_2(random_int8_export_dir: Path, tmp_path: Path, key: str,
                                                            value: str) -> None:
    bare = _with_prop(random_int8_export_dir / "model.onnx", tmp_path / "bare" / "model.onnx", key, value)
    result = _invoke("build", bare, "--backend", "onnxruntime")
    assert result.exit_code == 2 and "hint:" in result.output and len(result.output) < MAX_OUTPUT, result.output
    assert sorted(p.name for p in bare.parent.iterdir()) == ["model.onnx"]  # no engine built for it


COMPARE = {
    "report-missing-keys": lambda p: p.write_text(json.dumps({"schema": "resnext-deploy/report", "verification": {"x": 1}})),
    "report-model-a-string": lambda p: p.write_text(json.dumps({"schema": "resnext-deploy/report", "model": "tiny",
                                                                "precision": "int8", "verification": {"accuracy": {}}})),
    "sweep-string-values": lambda p: p.write_text(json.dumps({"schema": "resnext-deploy/sweep", "cells": [{"compare": {
        "model": "resnext_tiny", "precision": "int8", "backend": "onnxruntime", "target_top1": "high",
        "p50_ms": {"1": "fast"}, "eval": {}}}]})),
    "sweep-cells-a-string": lambda p: p.write_text(json.dumps({"schema": "resnext-deploy/sweep", "cells": "all"})),
    "deep": lambda p: p.write_text('{"schema": "resnext-deploy/sweep", "cells": ' + DEEP + "}"),
}


@pytest.mark.parametrize("case", list(COMPARE))
def test_a_malformed_compare_to_file_exits_2_before_verify_evaluates(random_int8_export_dir: Path, synthetic_imagenet,
                                                                     tmp_path: Path, case: str) -> None:
    directory = Path(shutil.copytree(random_int8_export_dir, tmp_path / "export"))
    earlier = tmp_path / "earlier.json"
    COMPARE[case](earlier)
    result = _invoke("verify", directory, "--eval-data", synthetic_imagenet.val, "--no-latency", "--eval-size", 20,
                     "--compare-to", earlier)
    assert result.exit_code == 2, result.output
    assert "--compare-to" in result.output and "Traceback" not in result.output and len(result.output) < MAX_OUTPUT
    assert "verification" not in json.loads((directory / "report.json").read_text())  # nothing was evaluated


@pytest.mark.parametrize("command", ["export", "sweep"])
def test_a_malformed_compare_to_file_exits_2_before_export_or_sweep(tiny_spec, synthetic_imagenet, tmp_path: Path,
                                                                    command: str) -> None:
    earlier = tmp_path / "earlier.json"
    COMPARE["sweep-string-values"](earlier)
    args = (["export", "resnext_tiny", "-p", "fp32"] if command == "export"
            else ["sweep", "--models", "resnext_tiny", "--precisions", "fp32", "--backends", "onnxruntime"])
    result = _invoke(*args, "--weights", "random", "--eval-data", synthetic_imagenet.val, "--compare-to", earlier,
                     "--output", tmp_path / "out")
    assert result.exit_code == 2, result.output
    assert "target_top1" in _text(result) and not (tmp_path / "out").exists()
