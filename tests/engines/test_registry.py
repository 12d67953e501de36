"""The backend registry: one entry per engines/ folder, read by the CLI, pipeline, bundles and Triton export."""

from __future__ import annotations

from pathlib import Path

import pytest

from resnext_deploy.calibration.recipes import RECIPES
from resnext_deploy.engines import registry
from resnext_deploy.engines.select import auto_rule, resolve_backend
from resnext_deploy.errors import UsageError

ROOT = Path(__file__).resolve().parents[2]


def test_every_backend_folder_is_registered_once() -> None:
    folders = {p.parent.name for p in (ROOT / "resnext_deploy" / "engines").glob("*/spec.py")}
    assert folders == set(registry.REGISTRY)
    for name, spec in registry.REGISTRY.items():
        assert spec.name == name and spec.title and spec.install_hint
        assert spec.default_recipe in RECIPES
        assert registry.spec_for_sidecar(f"model.int8{spec.sidecar_suffix}") is spec
    assert len(set(registry.sidecar_suffixes())) == len(registry.REGISTRY)


def test_cli_choices_come_from_the_registry() -> None:
    from resnext_deploy.cli._options import Backend, Recipe

    assert [m.value for m in Backend] == list(registry.backend_names())
    assert [m.value for m in Recipe] == ["auto", *RECIPES]
    assert registry.backend_names()[0] == "auto" and registry.DEFAULT_BACKEND in registry.backend_names()


def test_recipe_follows_the_backend_unless_given() -> None:
    from resnext_deploy.export.preflight import resolve_recipe

    for name, spec in registry.REGISTRY.items():
        assert resolve_recipe("auto", name) == spec.default_recipe
    assert registry.default_recipe("auto") == registry.REGISTRY[registry.DEFAULT_BACKEND].default_recipe
    assert resolve_recipe("tensorrt", "onnxruntime") == "tensorrt"
    with pytest.raises(UsageError, match="unknown backend 'tvm'"):
        registry.get_spec("tvm")


def test_auto_rule_says_why_in_one_line() -> None:
    backend, reason = auto_rule("fp32")
    assert reason.startswith(f"auto: {backend.name}") and "\n" not in reason
    named, why = resolve_backend(registry.DEFAULT_BACKEND)
    assert named.name == registry.DEFAULT_BACKEND and why == f"{registry.DEFAULT_BACKEND}: requested"


def test_export_options_reject_unknown_backend_and_recipe_when_made() -> None:
    from resnext_deploy.export import ExportOptions

    with pytest.raises(UsageError, match="unknown backend 'tvm'"):
        ExportOptions(model="resnext50d_32x4d", backend="tvm")
    with pytest.raises(UsageError, match="unknown recipe 'int4'"):
        ExportOptions(model="resnext50d_32x4d", recipe="int4")
