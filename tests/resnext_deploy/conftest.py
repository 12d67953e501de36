"""Verification fixtures: an INT8 export of the shared tiny trained model, and an unlabelled flat folder."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.support.synthetic import write_flat_val


@pytest.fixture(scope="session")
def unlabelled_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A flat folder of 30 JPEGs with no labels file."""
    return write_flat_val(tmp_path_factory.mktemp("unlabelled"), n_per_class=3, seed=5, labels=None).folder


@pytest.fixture(scope="session")
def int8_export_dir(synthetic_imagenet, tiny_checkpoint, tmp_path_factory: pytest.TempPathFactory) -> Path:  # type: ignore[no-untyped-def]
    """An INT8 export directory of the tiny trained model, calibrated on ``train`` (read-only: copy it)."""
    from resnext_deploy.export import CalibrationOptions, ExportOptions, run_export

    root = tmp_path_factory.mktemp("verify-export")
    options = ExportOptions(
        model="resnext_tiny", precision="int8", backend="onnxruntime", weights=str(tiny_checkpoint.checkpoint),
        output=root / "int8",
        calibration=CalibrationOptions(data=synthetic_imagenet.train, size=50, method="minmax", cache_dir=root / "cache"),
    )
    directory, _ = run_export(options, command=["test"])
    return directory


@pytest.fixture
def export_dir(int8_export_dir: Path, tmp_path: Path) -> Path:
    """A private copy of the INT8 export directory for one test to modify."""
    return Path(shutil.copytree(int8_export_dir, tmp_path / "export"))
