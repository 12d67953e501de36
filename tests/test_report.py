"""report.json is defined once (resnext_deploy.report), published as a JSON Schema, and earlier versions still read."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import jsonschema
import pytest

from resnext_deploy.errors import InputError
from resnext_deploy.report import REPORT_NAME, SCHEMA_VERSION, Report, json_schema, parse_report, read_report

ROOT = Path(__file__).resolve().parents[1]
SCHEMA_FILE = ROOT / "docs" / "report.schema.json"


def test_the_published_schema_is_generated_from_the_models() -> None:
    assert json.loads(SCHEMA_FILE.read_text()) == json_schema(), (
        "docs/report.schema.json is stale: run `python -m resnext_deploy.report > docs/report.schema.json`")


def test_an_export_report_validates_against_the_published_schema(random_int8_export_dir: Path) -> None:
    document = json.loads((random_int8_export_dir / REPORT_NAME).read_text())
    jsonschema.validate(document, json.loads(SCHEMA_FILE.read_text()))
    report = read_report(random_int8_export_dir)
    assert report.schema_version == SCHEMA_VERSION
    assert report.model is not None and report.model.name == "resnext_tiny"
    assert report.quantization is not None and report.quantization.recipe == "onnxruntime"
    assert report.artifacts.int8 == "model.int8.onnx" and report.artifacts.named("int8") == "model.int8.onnx"
    assert report.to_json() == document  # what is read is what was written, key for key


def test_a_version_1_report_is_still_read(random_int8_export_dir: Path, tmp_path: Path) -> None:
    directory = Path(shutil.copytree(random_int8_export_dir, tmp_path / "v1"))
    document = json.loads((directory / REPORT_NAME).read_text())
    document["schema_version"] = 1
    (directory / REPORT_NAME).write_text(json.dumps(document))
    assert read_report(directory).calibration.size == document["calibration"]["size"]


@pytest.mark.parametrize(("edit", "message"), [
    (lambda d: d.update(schema_version=99), "version 99"),
    (lambda d: d.update(model="resnext50d_32x4d"), "model"),
    (lambda d: d["artifacts"].update(int8=7), "artifacts.int8"),
    (lambda d: d.update(warnings="none"), "warnings"),
])
def test_a_malformed_report_is_refused_naming_the_field(random_int8_export_dir: Path, edit, message: str) -> None:  # type: ignore[no-untyped-def]
    document = json.loads((random_int8_export_dir / REPORT_NAME).read_text())
    edit(document)
    with pytest.raises(InputError, match=message):
        parse_report(document, "report.json")


def test_sections_are_typed_on_assignment() -> None:
    report = Report()
    report.weights = {"origin": "random", "kind": "random", "sha256": "0" * 64, "random": True}
    assert report.weights.random is True
    with pytest.raises(ValueError):
        report.precision = ["int8"]  # type: ignore[assignment]
