"""The four rooms install under one namespace: resnext_deploy.{exporters,calibration,engines}."""

from __future__ import annotations

import importlib
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ROOMS = {"resnext_deploy": "resnext_deploy", "resnext_deploy.exporters": "exporters",
         "resnext_deploy.calibration": "calibration", "resnext_deploy.engines": "engines"}


def _declared() -> tuple[dict[str, str], list[str]]:
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    return setuptools["package-dir"], setuptools["packages"]


def test_every_package_folder_is_installed_under_the_namespace() -> None:
    package_dir, packages = _declared()
    assert package_dir == ROOMS
    on_disk = set()
    for package, folder in ROOMS.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            relative = init.parent.relative_to(ROOT / folder).parts
            on_disk.add(".".join((package, *relative)))
    assert on_disk == set(packages)


def test_rooms_import_from_the_namespace() -> None:
    for package, folder in ROOMS.items():
        module = importlib.import_module(package)
        assert Path(module.__file__).parent == ROOT / folder


def test_no_top_level_room_packages_are_importable_from_site_packages() -> None:
    import importlib.util
    import sys

    saved = list(sys.path)
    try:
        sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT]
        for name in ("engines", "calibration", "exporters"):
            spec = importlib.util.find_spec(name)
            assert spec is None or ROOT not in Path(spec.origin or "/").parents, name
    finally:
        sys.path[:] = saved
