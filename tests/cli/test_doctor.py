"""`resnext-deploy doctor`: the machine's engines, auto's choices and facts; the same record as report.json's environment."""

from __future__ import annotations

import ctypes
import importlib.machinery
import json
import sys
import types
from pathlib import Path

import pytest
from typer.testing import CliRunner

from resnext_deploy.cli import app
from resnext_deploy.engines import cuda, probe
from resnext_deploy.engines.registry import REGISTRY
from resnext_deploy.layout import PRECISIONS

runner = CliRunner()


def _doctor(*args: str) -> dict:
    result = runner.invoke(app, ["doctor", "--json", *args])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _clear_caches() -> None:
    for cached in (cuda.cuda_devices, cuda.driver_version, probe.engines_record):
        cached.cache_clear()


@pytest.fixture(autouse=True)
def fresh_probes():  # type: ignore[no-untyped-def]
    _clear_caches()
    yield
    _clear_caches()


def test_doctor_json_on_this_machine_without_tensorrt() -> None:
    if "tensorrt" in sys.modules or probe.engine_status("tensorrt").installed:
        pytest.skip("TensorRT is installed here")
    facts = _doctor()
    engines = {e["name"]: e for e in facts["engines"]}
    assert list(engines) == list(REGISTRY)
    trt = engines["tensorrt"]
    assert (trt["installed"], trt["usable"], trt["version"]) == (False, False, None)
    assert trt["why"] == "tensorrt not installed" and "pip install 'resnext-deploy[tensorrt]'" in trt["hint"]
    ort = engines["onnxruntime"]
    assert ort["installed"] and ort["usable"] and ort["version"] and ort["hint"] == ""
    assert "CPUExecutionProvider" in ort["details"]["providers"]
    assert set(facts["auto"]) == set(PRECISIONS)
    assert facts["auto"]["fp32"]["backend"] == "onnxruntime" and "tensorrt not installed" in facts["auto"]["fp32"]["reason"]
    assert facts["gpu"]["devices"] == []
    for key in ("cpu", "cpu_features", "usable_cores", "cpu_count", "python", "packages"):
        assert key in facts
    assert facts["usable_cores"] >= 1 and "onnx" in facts["packages"]
    table = runner.invoke(app, ["doctor"])
    assert table.exit_code == 0 and "--backend auto" in table.output and "usable cores" in table.output


def test_require_an_engine_that_is_not_usable_exits_2_with_the_install_hint() -> None:
    if probe.engine_status("tensorrt").usable:
        pytest.skip("TensorRT is usable here")
    result = runner.invoke(app, ["doctor", "--require", "tensorrt"])
    assert result.exit_code == 2 and "TensorRT is not usable here" in result.output
    assert "pip install 'resnext-deploy[tensorrt]'" in result.output and "Traceback" not in result.output
    assert runner.invoke(app, ["doctor", "--require", "onnxruntime"]).exit_code == 0
    unknown = runner.invoke(app, ["doctor", "--require", "tvm"])
    assert unknown.exit_code == 2 and "unknown backend" in unknown.output


class _FakeDriver:
    """libcuda's entry points as ctypes calls them: one NVIDIA L4 (compute capability 8.9), CUDA 12.4."""

    def cuInit(self, flags: int) -> int:  # noqa: N802 (the driver's own names)
        return 0

    def cuDeviceGetCount(self, count) -> int:  # type: ignore[no-untyped-def]  # noqa: N802
        count._obj.value = 1
        return 0

    def cuDeviceGet(self, device, index: int) -> int:  # type: ignore[no-untyped-def]  # noqa: N802
        device._obj.value = index
        return 0

    def cuDeviceGetName(self, buffer, length: int, device) -> int:  # type: ignore[no-untyped-def]  # noqa: N802
        buffer.value = b"NVIDIA L4"
        return 0

    def cuDeviceGetAttribute(self, value, attribute: int, device) -> int:  # type: ignore[no-untyped-def]  # noqa: N802
        value._obj.value = {75: 8, 76: 9}[attribute]
        return 0

    def cuDriverGetVersion(self, version) -> int:  # type: ignore[no-untyped-def]  # noqa: N802
        version._obj.value = 12040
        return 0


@pytest.fixture
def stubbed_tensorrt(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The third-party side of a GPU machine: an importable `tensorrt`, a CUDA driver with one GPU, a CUDA runtime
    where Polygraphy looks (LD_LIBRARY_PATH). Our own probes run unchanged."""
    module = types.ModuleType("tensorrt")
    module.__spec__ = importlib.machinery.ModuleSpec("tensorrt", None)
    module.__version__ = "10.9.0.34"  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "tensorrt", module)
    real_cdll = ctypes.CDLL

    def cdll(name: str, *args, **kwargs):  # type: ignore[no-untyped-def]
        return _FakeDriver() if str(name).startswith("libcuda.so") else real_cdll(name, *args, **kwargs)

    monkeypatch.setattr(ctypes, "CDLL", cdll)
    (tmp_path / "libcudart.so.12").write_bytes(b"")
    monkeypatch.setenv("LD_LIBRARY_PATH", str(tmp_path))


def test_doctor_json_with_a_usable_tensorrt(stubbed_tensorrt: None) -> None:
    facts = _doctor("--require", "tensorrt")
    trt = {e["name"]: e for e in facts["engines"]}["tensorrt"]
    assert (trt["installed"], trt["usable"], trt["version"]) == (True, True, "10.9.0.34")
    assert trt["why"] == "TensorRT 10.9.0.34 on NVIDIA L4" and trt["hint"] == ""
    assert trt["details"]["gpus"] == ["NVIDIA L4 (compute capability 8.9)"]
    assert facts["gpu"] == {"devices": [{"index": 0, "name": "NVIDIA L4", "compute_capability": "8.9"}], "cuda_driver": "12.4"}
    assert {p: c["backend"] for p, c in facts["auto"].items()} == {p: "tensorrt" for p in PRECISIONS}
    assert facts["auto"]["int8"]["reason"] == "auto: tensorrt (TensorRT 10.9.0.34 on NVIDIA L4)"


def test_report_environment_is_the_doctor_record(random_int8_export_dir: Path) -> None:
    from resnext_deploy.report import read_report

    report = read_report(random_int8_export_dir)
    facts = _doctor()
    environment = report.environment
    assert set(environment) == set(facts)
    assert environment["engines"] == facts["engines"] and environment["auto"] == facts["auto"]


def test_docs_report_names_every_key_of_a_report(random_int8_export_dir: Path) -> None:
    from resnext_deploy.report import read_report

    report = read_report(random_int8_export_dir)
    documented = (Path(__file__).resolve().parents[2] / "docs" / "report.md").read_text(encoding="utf-8")
    document = report.to_json()
    keys = [*document, *document["environment"], *document["weights"]]
    missing = [key for key in keys if f"`{key}`" not in documented]
    assert not missing, f"docs/report.md does not describe {missing}: add them to the table of their section"
