"""The layers of docs/DESIGN.md hold: import-linter's contracts, first-party imports at the top, a light CLI."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEAVY = {"torch", "torchvision", "timm", "onnx", "onnxruntime", "onnxsim", "openvino", "tensorrt", "polygraphy", "ray",
         "matplotlib", "cryptography"}


def test_import_linter_contracts_are_kept() -> None:
    """cli > sweep > stages > rooms > ground, the rooms independent, no cycle between sibling modules."""
    lint = Path(sys.executable).with_name("lint-imports")
    done = subprocess.run([str(lint), "--no-cache"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "0 broken" in done.stdout


def _function_level_first_party_imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for function in ast.walk(tree):
        if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for node in ast.walk(function):
            names = ([node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level
                     else [alias.name for alias in node.names] if isinstance(node, ast.Import) else [])
            if (isinstance(node, ast.ImportFrom) and node.level) or any(n.split(".")[0] == "resnext_deploy" for n in names):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    return found


def test_first_party_imports_sit_at_the_top_of_modules() -> None:
    """A module's header shows what it depends on; only heavy third-party libraries are imported lazily."""
    found = [hit for path in sorted((ROOT / "resnext_deploy").rglob("*.py")) for hit in _function_level_first_party_imports(path)]
    assert not found, "first-party imports inside functions:\n" + "\n".join(found)


def test_the_cli_and_every_module_import_no_heavy_library() -> None:
    """`resnext-deploy --help` (and importing any of our modules) loads none of the heavy libraries."""
    script = (
        "import importlib, pkgutil, sys\n"
        "import resnext_deploy\n"
        "names = [m.name for m in pkgutil.walk_packages(resnext_deploy.__path__, 'resnext_deploy.')]\n"
        "for name in names: importlib.import_module(name)\n"
        f"print(len(names), sorted({{m.split('.')[0] for m in sys.modules}} & set({sorted(HEAVY)!r})))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    count, heavy = done.stdout.strip().split(" ", 1)
    assert int(count) > 100 and heavy == "[]", done.stdout
