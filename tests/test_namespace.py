"""Every room is a sub-package of ``resnext_deploy`` in its own folder, and all of them are installed."""

from __future__ import annotations

import importlib
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]
ROOMS = ("exporters", "calibration", "engines", "data")


def test_every_package_folder_is_installed() -> None:
    find = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    assert find["include"] == ["resnext_deploy*"]
    from setuptools import find_packages

    on_disk = {".".join(init.parent.relative_to(ROOT).parts) for init in (ROOT / "resnext_deploy").rglob("__init__.py")}
    assert set(find_packages(str(ROOT), include=find["include"])) == on_disk


def test_rooms_import_from_their_folders() -> None:
    for room in ROOMS:
        module = importlib.import_module(f"resnext_deploy.{room}")
        assert Path(module.__file__).parent == ROOT / "resnext_deploy" / room


def test_no_top_level_room_packages() -> None:
    for name in ROOMS:
        assert not (ROOT / name).exists(), f"{name}/ belongs under resnext_deploy/"
