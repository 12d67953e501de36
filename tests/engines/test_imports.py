"""Importing every engines module loads no backend library, even with tensorrt missing."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from resnext_deploy.errors import UsageError


def test_every_module_imports_light_without_tensorrt() -> None:
    script = textwrap.dedent(
        """
        import importlib, pkgutil, sys
        sys.modules["tensorrt"] = None  # makes `import tensorrt` fail like a missing install
        import resnext_deploy.engines as engines
        names = [m.name for m in pkgutil.walk_packages(engines.__path__, "resnext_deploy.engines.")]
        for name in names:
            importlib.import_module(name)
        heavy = sorted(
            m for m in sys.modules
            if m.split(".")[0] in {"onnxruntime", "openvino", "polygraphy", "torch", "onnx", "timm", "cuda", "pycuda"}
        )
        assert sys.modules["tensorrt"] is None
        print(len(names), heavy)
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    count, heavy = done.stdout.strip().split(" ", 1)
    assert int(count) >= 10
    assert heavy == "[]"


def test_auto_falls_back_to_onnxruntime_with_reason() -> None:
    from resnext_deploy.engines import resolve_backend
    from resnext_deploy.engines.tensorrt import TensorRTBackend

    ok, why = TensorRTBackend().available()
    backend, reason = resolve_backend("auto", "fp32")  # FP32 on CPU: ONNX Runtime whether or not OpenVINO is here
    if ok:
        assert backend.name == "tensorrt" and reason.startswith("auto: tensorrt")
    else:
        assert backend.name == "onnxruntime"
        assert reason.startswith(f"auto: onnxruntime ({why}") and "\n" not in reason


def test_tensorrt_without_tensorrt_or_gpu_names_the_extra() -> None:
    from resnext_deploy.engines import resolve_backend
    from resnext_deploy.engines.tensorrt import TensorRTBackend
    from resnext_deploy.errors import NotAvailableError

    if TensorRTBackend().available()[0]:
        pytest.skip("TensorRT and a GPU are present here")
    with pytest.raises(NotAvailableError) as info:
        resolve_backend("tensorrt")
    assert info.value.exit_code == 2
    assert "pip install 'resnext-deploy[tensorrt]'" in (info.value.hint or "")


def test_unknown_backend_is_a_usage_error() -> None:
    from resnext_deploy.engines import resolve_backend

    with pytest.raises(UsageError, match="unknown backend 'tvm'"):
        resolve_backend("tvm")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"min_batch": 4, "opt_batch": 2},
        {"opt_batch": 64, "max_batch": 32},
        {"min_batch": 0},
        {"workspace_mb": 0},
        {"threads": 0},
        {"builder_optimization_level": 9},
        {"precision": "int4"},
    ],
)
def test_bad_build_options_are_usage_errors(kwargs: dict[str, object]) -> None:
    from resnext_deploy.engines import BuildOptions

    with pytest.raises(UsageError):
        BuildOptions(**kwargs)  # type: ignore[arg-type]
