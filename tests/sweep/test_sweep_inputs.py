"""Bad sweep input exits 2 with a message and a hint, before any heavy work: plans, Ray missing or unreachable."""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

BASE = ["--precisions", "fp32", "--backends", "onnxruntime", "--weights", "random"]


def _invoke(*args: object):  # type: ignore[no-untyped-def]
    from resnext_deploy.cli import app

    result = CliRunner().invoke(app, ["sweep", *map(str, args)])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def _text(output: str) -> str:
    return " ".join(output.split())


@pytest.mark.parametrize(("plan", "message"), [
    ('models = ["resnext50d_32x4"]\n', "unknown model 'resnext50d_32x4' hint: did you mean resnext50d_32x4d"),
    ('models = ["resnext50d_32x4d"]\nbackends = ["onnxruntim"]\n', "unknown engine 'onnxruntim' in the sweep plan"),
    ('models = ["resnext50d_32x4d"]\nprecisions = ["int4"]\n', "unknown precision 'int4' in the sweep plan"),
    ('models = []\n', "the sweep matrix is empty: no models"),
    ('models = ["resnext50d_32x4d"]\nprecisions = []\nbackends = []\n', "empty: no precisions and no backends"),
    ("models: [resnext50d_32x4d]\n", "is not valid TOML"),
    ('models = ["resnext50d_32x4d"]\nengines = ["onnxruntime"]\n', "unknown key(s) engines"),
    ('models = ["resnext50d_32x4d"]\n[weights]\nresnext50d_32x4d = "missing.pth"\n', "missing.pth is not a file"),
])
def test_bad_plan_exits_2(plan: str, message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # relative names: the messages are not wrapped inside a long temp path
    path = Path("plan.toml")
    path.write_text(plan)
    result = _invoke(path, "--output", "out")
    assert result.exit_code == 2, result.output
    # the plan's weights are named by their absolute path, which rich may break anywhere: compared without spaces
    assert "".join(message.split()) in "".join(result.output.split())
    assert "Traceback" not in result.output and not (tmp_path / "out").exists()


def test_missing_plan_file_and_timeout_without_ray_exit_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # a relative name: the message is not wrapped inside a long temp path
    missing = _invoke("nope.toml")
    assert missing.exit_code == 2 and "plan file nope.toml does not exist" in _text(missing.output)
    result = _invoke("--models", "resnext50d_32x4d", *BASE, "--timeout", 10, "--output", tmp_path / "out")
    assert result.exit_code == 2 and "--timeout applies to --ray sweeps" in _text(result.output)


def _sweep_subprocess(args: list[str], prelude: str = "") -> subprocess.CompletedProcess[str]:
    """The CLI in a fresh interpreter; the timeout only guards the suite against a hang."""
    script = textwrap.dedent(f"""
        import sys
        {prelude}
        from resnext_deploy.cli import main
        sys.argv = ["resnext-deploy", "sweep", *{args!r}]
        main()
    """)
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_unreachable_ray_address_exits_2_instead_of_hanging(tmp_path: Path) -> None:
    pytest.importorskip("ray")
    address = f"127.0.0.1:{_closed_port()}"
    done = _sweep_subprocess(["--models", "resnext50d_32x4d", *BASE, "--ray", address, "--output", str(tmp_path / "out")])
    assert done.returncode == 2, done.stderr
    assert f"cannot reach a Ray cluster at {address}" in _text(done.stderr)
    assert "ray start --head" in _text(done.stderr) and not (tmp_path / "out").exists()


def test_ray_not_installed_exits_2_naming_the_extra(tmp_path: Path) -> None:
    done = _sweep_subprocess(["--models", "resnext50d_32x4d", *BASE, "--ray", "auto", "--output", str(tmp_path / "out")],
                             prelude='sys.modules["ray"] = None  # `import ray` fails as if it were not installed')
    assert done.returncode == 2, done.stderr
    assert "--ray needs Ray, which is not installed" in _text(done.stderr)
    assert "pip install 'resnext-deploy[ray]'" in _text(done.stderr)


def test_sweep_package_imports_no_heavy_library() -> None:
    script = textwrap.dedent("""
        import importlib, pkgutil, sys
        import resnext_deploy.sweep as sweep
        for module in pkgutil.walk_packages(sweep.__path__, "resnext_deploy.sweep."):
            importlib.import_module(module.name)
        import resnext_deploy.cli
        print(sorted(m for m in sys.modules if m.split(".")[0] in {"ray", "torch", "onnxruntime", "matplotlib", "onnx"}))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
