"""In a bundle an engine sidecar names only files the manifest lists, beside it: an edited sidecar that points
outside the bundle folder (checksums re-recorded, as an unsigned bundle allows) is refused by `inspect`, `build`
and `predict` (exit 2), and nothing outside the folder is ever opened."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from resnext_deploy.bundle import package_directory, safe_extract
from resnext_deploy.bundle.manifest import MANIFEST_NAME, file_record, targets_of
from resnext_deploy.files import sha256_file, write_json
from tests.support.opens import opened_files

runner = CliRunner()


def _rerecord(directory: Path, drop: tuple[str, ...] = ()) -> None:
    """Re-list every file with its current checksum (minus ``drop``) and the targets their sidecars record."""
    manifest = json.loads((directory / MANIFEST_NAME).read_text())
    names = [f["path"] for f in manifest["files"] if f["path"] not in drop]
    manifest["files"] = [file_record(directory, name) for name in names]
    manifest["targets"] = targets_of(directory, names)
    write_json(directory / MANIFEST_NAME, manifest)


def _point_outside(sidecar: Path, key: str, outside: Path) -> None:
    record = json.loads(sidecar.read_text())
    stat = outside.stat()
    record[key].update(path=os.fspath(outside), size=stat.st_size, mtime_ns=stat.st_mtime_ns, sha256=sha256_file(outside))
    sidecar.write_text(json.dumps(record))


def _forged(backend: str, export: Path, tmp_path: Path) -> tuple[Path, Path]:
    """(bundle folder whose sidecar names an engine file in ``outside``, ``outside``)."""
    from resnext_deploy.engines import BuildOptions, get_spec

    directory = safe_extract(package_directory(export, tmp_path / "b.tar.gz").path, tmp_path / "bundle")
    outside = tmp_path / "outside"
    built = get_spec(backend).backend().build(directory / "model.onnx", BuildOptions(threads=1), output_dir=outside)
    sidecar, key = {"onnxruntime": ("model.onnxruntime.json", "optimized_graph"),
                    "openvino": ("model.fp16.openvino.json", "compiled_model")}[backend]
    _point_outside(directory / sidecar, key, built.path)
    _rerecord(directory)
    return directory, outside


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_a_sidecar_pointing_outside_the_bundle_is_refused_and_never_opened(backend: str, request, tmp_path: Path,
                                                                           images, cli) -> None:
    export = request.getfixturevalue("export_dir" if backend == "onnxruntime" else "ov_export")
    directory, outside = _forged(backend, export, tmp_path)
    with opened_files(outside) as opened:
        predicted = runner.invoke(cli, ["predict", str(directory), str(images[0]), "--backend", backend])
        inspected = runner.invoke(cli, ["inspect", str(directory)])
        built = runner.invoke(cli, ["build", str(directory), "--backend", backend])
    assert predicted.exit_code == 2, predicted.output
    assert inspected.exit_code == 2 and built.exit_code == 2
    assert "not a listed file" in predicted.output and "Traceback" not in predicted.output
    assert opened == []


def test_an_unlisted_sidecar_beside_the_model_is_refused(ov_export: Path, tmp_path: Path, images, cli) -> None:
    directory = safe_extract(package_directory(ov_export, tmp_path / "b.tar.gz").path, tmp_path / "bundle")
    _rerecord(directory, drop=("model.fp16.openvino.json", "model.fp16.openvino.blob"))  # present, no longer listed
    result = runner.invoke(cli, ["predict", str(directory), str(images[0]), "--backend", "openvino"])
    assert result.exit_code == 2 and "not listed in the manifest" in result.output
    (directory / "model.fp16.openvino.json").unlink()
    result = runner.invoke(cli, ["predict", str(directory), str(images[0]), "--backend", "openvino"])
    assert result.exit_code == 0, result.output
