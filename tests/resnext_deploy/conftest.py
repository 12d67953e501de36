"""Session fixtures for verification tests: synthetic ImageNet folders, the tiny trained model, an INT8 export."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.support.synthetic import write_flat_val, write_imagefolder
from tests.support.tiny import TINY_SPEC, train_tiny


@pytest.fixture(scope="session")
def verify_images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``root/train`` (training + calibration), ``root/val`` (evaluation), ``root/flat`` (unlabelled)."""
    root = tmp_path_factory.mktemp("verify-images")
    write_imagefolder(root, "train", n_per_class=20, seed=0)
    write_imagefolder(root, "val", n_per_class=12, seed=0)
    write_flat_val(root / "flat", n_per_class=3, seed=5, labels=None)
    return root


@pytest.fixture(scope="session")
def verify_checkpoint(verify_images: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny ResNeXt trained on the synthetic task, registered in the zoo as ``resnext_tiny``."""
    from resnext_deploy.zoo import register_model

    register_model(TINY_SPEC)
    result = train_tiny(verify_images, tmp_path_factory.mktemp("verify-ckpt") / "tiny.pth", epochs=8)
    return result.checkpoint


@pytest.fixture(scope="session")
def int8_export_dir(verify_images: Path, verify_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An INT8 export directory of the tiny trained model, calibrated on ``train`` (read-only: copy it)."""
    from resnext_deploy.pipeline import CalibrationOptions, ExportOptions, run_export

    root = tmp_path_factory.mktemp("verify-export")
    options = ExportOptions(
        model=TINY_SPEC.name, precision="int8", backend="onnxruntime", weights=str(verify_checkpoint),
        output=root / "int8",
        calibration=CalibrationOptions(data=verify_images / "train", size=50, method="minmax", cache_dir=root / "cache"),
    )
    directory, _ = run_export(options, command=["test"])
    return directory


@pytest.fixture
def export_dir(int8_export_dir: Path, tmp_path: Path) -> Path:
    """A private copy of the INT8 export directory for one test to modify."""
    return Path(shutil.copytree(int8_export_dir, tmp_path / "export"))
