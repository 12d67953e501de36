"""Calibration fixtures: the random-weight tiny ResNeXt, exported once per session."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.calibration.quant_support import export_random_tiny


@pytest.fixture(scope="session")
def random_tiny_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``quant_support.export_random_tiny`` (dynamo), exported once for every module (read-only: copy it)."""
    return export_random_tiny(tmp_path_factory.mktemp("random-tiny") / "model.onnx")


@pytest.fixture(scope="session")
def copy_random_tiny(random_tiny_onnx: Path):  # type: ignore[no-untyped-def]
    """``copy_random_tiny(folder, name="model.onnx")``: a private copy of ``random_tiny_onnx`` that a module may
    quantize next to, edit or damage."""

    def copy(folder: Path, name: str = "model.onnx") -> Path:
        return Path(shutil.copyfile(random_tiny_onnx, Path(folder) / name))

    return copy
