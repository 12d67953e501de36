"""An exported tiny model with an ONNX Runtime engine, packed once per session into a bundle."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import typer
from PIL import Image


@pytest.fixture(scope="session")
def export_dir(random_fp32_export_dir: Path) -> Path:
    """resnext_tiny (random weights, fp32) exported with its ONNX Runtime engine, as `export` writes it (read-only)."""
    return random_fp32_export_dir


@pytest.fixture(scope="session")
def ov_export(random_fp32_export_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """resnext_tiny (random weights) at FP16 with its OpenVINO engine, as `export --backend openvino` writes it
    (from the session's FP32 export)."""
    pytest.importorskip("openvino", reason="openvino is not installed on this platform")
    from resnext_deploy.engines import BuildOptions
    from resnext_deploy.export import ExportOptions, run_export

    out = tmp_path_factory.mktemp("ov-export") / "tiny"
    directory, report = run_export(ExportOptions(model="resnext_tiny", weights="random", precision="fp16",
                                                 backend="openvino", output=out, engine=BuildOptions(threads=1),
                                                 fp32_from=random_fp32_export_dir / "model.onnx"))
    assert report.engine is not None and report.engine.backend == "openvino"
    return directory


@pytest.fixture(scope="session")
def bundle_file(export_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from resnext_deploy.bundle import package_directory

    return package_directory(export_dir, tmp_path_factory.mktemp("bundle") / "tiny.tar.gz").path


@pytest.fixture
def bundle_copy(bundle_file: Path, tmp_path: Path) -> Path:
    """A private copy of the bundle tarball, for tests that change or unpack it."""
    return Path(shutil.copy(bundle_file, tmp_path / "tiny.tar.gz"))


@pytest.fixture(scope="session")
def images(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    paths = []
    for index, size in enumerate([(90, 70), (64, 64), (50, 120)]):
        path = folder / f"img{index}.{'png' if index == 1 else 'jpg'}"
        Image.fromarray((rng.random((size[1], size[0], 3)) * 255).astype(np.uint8)).save(path)
        paths.append(path)
    return paths


@pytest.fixture(scope="session")
def cli() -> typer.Typer:
    """The bundle commands on a Typer app (the same functions `resnext_deploy.cli.app` registers)."""
    from resnext_deploy.cli.build import build
    from resnext_deploy.cli.inspect_bundle import inspect_bundle
    from resnext_deploy.cli.package import package
    from resnext_deploy.cli.predict import predict

    app = typer.Typer()
    app.command()(package)
    app.command("inspect")(inspect_bundle)
    app.command()(build)
    app.command()(predict)
    return app


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())
